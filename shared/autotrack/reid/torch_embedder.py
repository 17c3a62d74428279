"""Re-ID embeddings from a PyTorch checkpoint a user supplies (torchreid OSNet state dicts).

No OSNet weights can be fetched here, so the architecture is defined in osnet.py and shaped
from the checkpoint itself: widths, block counts, feature size and instance norm are read
off the tensors, then the weights load strictly. Checkpoints are read with
``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary
pickled code. torch is an optional dependency; this module imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autotrack.checkpoints import read_weights_only
from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.models import sha256_of
from autotrack.reid.base import CropEmbedder
from autotrack.reid.osnet import OSNet, osnet_from_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, as torchreid trains
IMAGENET_STD = (0.229, 0.224, 0.225)
_IGNORED_PREFIXES = ("classifier.",)  # identity logits of the training set: not an embedding
_SHOWN_KEYS = 5


class CheckpointError(AutotrackError):
    """The checkpoint cannot be read or does not fit the architecture."""


def _state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a torchreid checkpoint, a plain state dict, or a wrapper."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not any(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict found (expected a mapping of tensors, "
                              "or one under 'state_dict' or 'model')")
    tensors = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is not a named tensor")
        tensors[key.removeprefix("module.")] = value  # saved from nn.DataParallel
    return tensors


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(sorted(keys)[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, with one clear error for every kind of misfit."""
    given = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in given and k not in optional]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in given and given[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors ({_listing(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({_listing(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape ({_listing(wrong)})")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    merged = dict(expected)
    merged.update(given)
    model.load_state_dict(merged, strict=True)


class TorchReidEmbedder(CropEmbedder):
    """Re-ID embedder on a torch module mapping (N, 3, h, w) normalised RGB to (N, D)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        input_hw: tuple[int, int] = (256, 128),
        device: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        max_batch: int = 128,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.name = name
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device).eval()
        self.max_batch = max_batch
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.batched = True
        probe = self._run(np.zeros((1, *self.input_hw, 3), dtype=np.uint8))
        if probe.ndim != 2:
            raise CheckpointError(f"{name}: the model does not return one vector per image")
        self.dim = int(probe.shape[1])

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | None = None,
                        input_hw: tuple[int, int] = (256, 128)) -> TorchReidEmbedder:
        """Load a torchreid OSNet checkpoint (``.pth``, ``.pth.tar``, ``.pt``)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"Re-ID checkpoint {path} not found")
        checkpoint = read_weights_only(path, CheckpointError)
        state = _state_dict_of(checkpoint, path)
        try:
            model = osnet_from_state_dict(state)
        except KeyError as key:
            raise CheckpointError(
                f"{path} is not a torchreid OSNet checkpoint (osnet_x1_0, x0_75, x0_5, x0_25, "
                f"osnet_ibn_x1_0): it has no tensor {key}; its first keys are "
                f"{_listing(list(state))}") from None
        except ValueError as exc:
            raise CheckpointError(f"{path}: unusable OSNet shape: {exc}") from None
        load_weights(model, state, str(path))
        return cls(model, name=f"{path.name}@{sha256_of(path)[:16]}", input_hw=input_hw,
                   device=device)

    @torch.inference_mode()
    def _run(self, crops: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1]))  # BGR to RGB
        batch = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        batch = (batch - self._mean) / self._std
        return self.model(batch).float().cpu().numpy().reshape(len(crops), -1)



__all__ = ["CheckpointError", "OSNet", "TorchReidEmbedder", "load_weights"]
