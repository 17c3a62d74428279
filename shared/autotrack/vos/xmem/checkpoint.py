"""Loading XMem weights: official checkpoints strictly, or a seeded random init for tests.

Official checkpoints (github.com/hkchengrex/XMem releases v1.0: ``XMem.pth``,
``XMem-s012.pth``, ``XMem-s01.pth``) are plain state dicts; they load with
``torch.load(weights_only=True)`` (no pickle code runs) and ``load_state_dict(strict=True)``.
The key, value and hidden widths are read from the weights, as the official code does.

:func:`random_state_dict` is a deterministic init: each tensor, in state-dict order, is drawn
uniformly from one ``numpy.random.RandomState(seed)``, scaled so activations stay in range
(the random network's probabilities are not all 0 or 1); it is bit-identical on any machine.
The parity fixture was made by loading it into the official network; the test regenerates it
instead of storing 250 MB of weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autotrack.checkpoints import read_weights_only
from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.vos.xmem.network import XMem, XMemDims

CHECKPOINT_ENV = "AUTOTRACK_XMEM_CHECKPOINT"
RELEASE_URL = "https://github.com/hkchengrex/XMem/releases/tag/v1.0"


def missing_checkpoint_message() -> str:
    return (f"no XMem checkpoint: set {CHECKPOINT_ENV} to an official XMem.pth (from "
            f"{RELEASE_URL}); weights are not downloaded")


def dims_from_state_dict(state: Mapping[str, torch.Tensor]) -> XMemDims:
    """The widths a checkpoint was trained with (as the official ``init_hyperparameters``)."""
    try:
        key_dim = state["key_proj.key_proj.weight"].shape[0]
        value_dim = state["value_encoder.fuser.block2.conv2.weight"].shape[0]
    except KeyError as exc:
        raise AutotrackError(f"not an XMem state dict: no {exc.args[0]}") from None
    transform = state.get("decoder.hidden_update.transform.weight")
    hidden_dim = 0 if transform is None else transform.shape[0] // 3
    return XMemDims(int(key_dim), int(value_dim), int(hidden_dim))


def _empty(dims: XMemDims) -> XMem:
    """The network with uninitialised weights (every tensor is loaded next)."""
    with torch.device("meta"):
        model = XMem(dims)
    return model.to_empty(device="cpu")


def load_checkpoint(path: str | Path) -> XMem:
    """An official XMem checkpoint -> the network (eval mode, CPU); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"XMem checkpoint {path} ({CHECKPOINT_ENV}) is not a file; "
                                 f"get XMem.pth from {RELEASE_URL}")
    state = read_weights_only(path)
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AutotrackError(f"XMem checkpoint {path} is not a state dict of tensors")
    model = _empty(dims_from_state_dict(state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:300]
        raise AutotrackError(f"XMem checkpoint {path} does not match the network: {text}") from None
    return model.eval()


def _ends_branch(owner: str) -> bool:
    """The last norm of a residual branch (starts small so 13 blocks do not blow up)."""
    parts = owner.split(".")
    return ((parts[0] == "key_encoder" and parts[-1] == "bn3")
            or (parts[0] == "value_encoder" and len(parts) == 4 and parts[-1] == "bn2"))


def _random_tensors(model: XMem, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the deterministic init, one at a time, in state-dict order."""
    modules = dict(model.named_modules())
    rs = np.random.RandomState(seed)
    for name, tensor in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        module = modules[owner]
        shape = tuple(tensor.shape)
        if leaf == "num_batches_tracked":
            yield name, torch.zeros(shape, dtype=torch.int64)
            continue
        # uniform draws: 5x faster than normal ones for 62M weights, and as good here
        u = rs.random_sample(shape)
        if isinstance(module, nn.BatchNorm2d):
            if leaf == "weight":
                low, high = (0.2, 0.4) if _ends_branch(owner) else (0.7, 1.1)
                value = low + (high - low) * u
            elif leaf == "running_var":
                value = 0.7 + 0.6 * u
            else:  # bias, running_mean
                value = (2 * u - 1) * 0.17
        elif leaf == "weight":  # conv / linear: variance gain^2 / fan_in
            # small logits, so the random network's probabilities are not all 0 or 1
            gain = 0.3 if name == "decoder.pred.weight" else 1.2
            value = (2 * u - 1) * (gain * np.sqrt(3.0 / np.prod(shape[1:])))
        else:  # conv / linear bias
            value = (2 * u - 1) * 0.09
        yield name, torch.from_numpy(value.astype(np.float32))


def random_state_dict(dims: XMemDims = XMemDims(), seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic, well-scaled random init (see the module docstring)."""
    return dict(_random_tensors(_empty(dims), seed))


def random_xmem(seed: int = 0, dims: XMemDims = XMemDims()) -> XMem:
    """The network with :func:`random_state_dict`, written in place (no second copy)."""
    model = _empty(dims)
    state = model.state_dict()
    with torch.no_grad():
        for name, value in _random_tensors(model, seed):
            state[name].copy_(value)
    return model.eval()


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """``checkpoint``, else ``AUTOTRACK_XMEM_CHECKPOINT``, else a one-line error."""
    path = str(checkpoint or "").strip() or os.environ.get(CHECKPOINT_ENV, "").strip()
    if not path:
        raise ModelNotFoundError(missing_checkpoint_message())
    return Path(path).expanduser()
