"""Build a SAM2 / SAM2.1 network from the package's own config and an official checkpoint.

The configs are read straight from the installed ``sam2`` package with OmegaConf and
instantiated through hydra's ``instantiate``, without hydra's global config search path: that
state is process-wide and another package (SAM3) may own it. Overrides are the ones the official
builders apply (dynamic multimask fallback, binarised click masks in the memory encoder) plus the
working resolution.

Resolution: SAM2 is trained at 1024 px, but nothing in its weights depends on that number, so
an official checkpoint loads at any multiple of 32 (tests and benchmarks run at 256-512 px on a
CPU). What follows the resolution and is set here: ``model.image_size`` (prompt encoder's
embedding grid and mask-input size, the mask decoder's upsampling, the memory encoder's input),
and the memory attention's RoPE grids (``feat_sizes``, 64x64 at 1024; the official code would
otherwise recompute them on the first frame). Hiera's windowed position embedding is
interpolated to the feature grid by the model itself; it tiles 8x8 windows on the stride-4
grid, hence the multiple of 32.

Weights: an explicit path, else ``$AUTOTRACK_SAM2_CHECKPOINT``, else, only when asked for,
seeded random weights (tests, benchmarks). Checkpoints are read with
``torch.load(weights_only=True)`` (tensors and plain containers, never pickled code) and loaded
strictly, as the official ``_load_checkpoint`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from autotrack.checkpoints import read_weights_only
from autotrack.errors import AutotrackError, ModelNotFoundError

ENV_CHECKPOINT = "AUTOTRACK_SAM2_CHECKPOINT"
_URL_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_URL_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SIZES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}
# config name -> (yaml inside the sam2 package, official checkpoint URL)
CONFIGS: dict[str, tuple[str, str]] = {
    **{f"sam2.1_hiera_{k}": (f"configs/sam2.1/sam2.1_hiera_{k}.yaml",
                             f"{_URL_21}sam2.1_hiera_{v}.pt") for k, v in _SIZES.items()},
    **{f"sam2_hiera_{k}": (f"configs/sam2/sam2_hiera_{k}.yaml",
                           f"{_URL_20}sam2_hiera_{v}.pt") for k, v in _SIZES.items()},
}
DEFAULT_CONFIG = "sam2.1_hiera_t"
NATIVE_SIZE = 1024
_MIN_SIZE, _MAX_SIZE, _SIZE_STEP = 128, 2048, 32
_BACKBONE_STRIDE = 16
_SHOWN_KEYS = 5


class Sam2CheckpointError(AutotrackError):
    """A SAM2 checkpoint cannot be read or does not fit the chosen config."""


def config_names() -> list[str]:
    return sorted(CONFIGS)


def _check_config(config: str) -> str:
    name = config.removesuffix(".yaml")
    if name not in CONFIGS:
        raise ValueError(
            f"unknown SAM2 config {config!r}; choose one of {', '.join(config_names())}")
    return name


def _check_image_size(image_size: int | None) -> int:
    if image_size is None:
        return NATIVE_SIZE
    size = int(image_size)
    if size != image_size or not _MIN_SIZE <= size <= _MAX_SIZE or size % _SIZE_STEP:
        raise ValueError(f"SAM2 image_size must be a multiple of {_SIZE_STEP} in "
                         f"{_MIN_SIZE}..{_MAX_SIZE}, got {image_size}")
    return size


def resolve_checkpoint(checkpoint: str | os.PathLike | None, config: str,
                       random_init: bool = False) -> Path | None:
    """The checkpoint to load: the argument, else the env var; None (seeded random weights)
    when ``random_init`` asks for them, which then wins over the env var, as for XMem (a
    deployed function sets the env var; a test or benchmark that asks for noise gets noise).
    A checkpoint argument together with ``random_init`` is a contradiction (ValueError)."""
    name = _check_config(config)
    if random_init:
        if checkpoint is not None:
            raise ValueError("give a checkpoint or random_init=True, not both")
        return None
    if checkpoint is None:
        checkpoint = os.environ.get(ENV_CHECKPOINT) or None
    if checkpoint is None:
        raise ModelNotFoundError(
            f"no SAM2 checkpoint: pass checkpoint= or set {ENV_CHECKPOINT} to the official "
            f"{name} weights ({CONFIGS[name][1]})")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"SAM2 checkpoint {path} not found (download {CONFIGS[name][1]})")
    return path


def model_config(config: str, image_size: int | None = None):
    """The OmegaConf model config of ``config`` at ``image_size``, overrides applied."""
    from omegaconf import OmegaConf  # sam2's own dependency

    name = _check_config(config)
    size = _check_image_size(image_size)
    yaml_path = resources.files("sam2").joinpath(CONFIGS[name][0])
    cfg = OmegaConf.create(yaml_path.read_text())
    grid = size // _BACKBONE_STRIDE
    overrides = {
        # as the official build_sam2 / build_sam2_video_predictor (apply_postprocessing=True)
        "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
        "model.binarize_mask_from_pts_for_mem_enc": True,
        # what follows the working resolution
        "model.image_size": size,
        "model.memory_attention.layer.self_attention.feat_sizes": [grid, grid],
        "model.memory_attention.layer.cross_attention.feat_sizes": [grid, grid],
        "model.compile_image_encoder": False,
    }
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.resolve(cfg)
    return cfg.model


def _state_dict_of(checkpoint: object, path: Path) -> Mapping[str, torch.Tensor]:
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise Sam2CheckpointError(
            f"{path}: not an official SAM2 checkpoint (expected {{'model': state_dict}})")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise Sam2CheckpointError(f"{path}: entry {key!r} is not a named tensor")
    return state


def _listing(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    """The state dict of an official ``{'model': state_dict}`` file, read weights-only."""
    return _state_dict_of(read_weights_only(path, Sam2CheckpointError), path)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly (every key, no extra key, every shape), with one clear error."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{len(keys)} {what} ({_listing(keys)})" for keys, what in (
        (missing, "missing tensors"), (unexpected, "unexpected tensors"),
        (wrong, "tensors of the wrong shape")) if keys]
    if problems:
        raise Sam2CheckpointError(f"{source} does not fit: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def build_sam2_model(checkpoint: str | os.PathLike | None = None, config: str = DEFAULT_CONFIG,
                     image_size: int | None = None, seed: int = 0, device: str = "cpu",
                     random_init: bool = False) -> nn.Module:
    """A ``SAM2Base`` in eval mode, float32, on ``device`` (see the module docstring)."""
    from hydra.utils import instantiate

    name = _check_config(config)
    cfg = model_config(name, image_size)
    path = resolve_checkpoint(checkpoint, name, random_init)
    state = None if path is None else read_checkpoint(path)  # a bad file fails before the build
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = instantiate(cfg, _recursive_=True)
    if state is not None:
        load_state(model, state, f"{path} (SAM2 config {name})")
    return model.to(device=torch.device(device), dtype=torch.float32).eval()
