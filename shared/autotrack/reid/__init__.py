"""Appearance embeddings for Re-ID: pick an embedder by registry name or file.

The OpenVINO person Re-ID models run on onnxruntime (core dependencies only); torchreid
OSNet checkpoints need torch, which is imported only when such a file is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.models import REGISTRY, find_spec, resolve_model
from autotrack.reid.base import Embedder, crop_batch, l2_normalize
from autotrack.reid.onnx_embedder import NotReidModelError, OnnxReidEmbedder

if TYPE_CHECKING:
    from autotrack.reid.torch_embedder import TorchReidEmbedder

DEFAULT_REID = "person-reid-0248"
TORCH_SUFFIXES = (".pt", ".pth", ".pth.tar", ".tar", ".ckpt")

__all__ = [
    "DEFAULT_REID",
    "Embedder",
    "NotReidModelError",
    "OnnxReidEmbedder",
    "TorchReidEmbedder",
    "crop_batch",
    "l2_normalize",
    "load_embedder",
]


def load_embedder(name_or_path: str | Path = DEFAULT_REID, *, device: str | None = None
                  ) -> Embedder:
    """An embedder for a registry name (``person-reid-0248``, ``person-reid-0287``), a Re-ID
    ``.onnx`` file, or a torchreid OSNet checkpoint (``.pth``, ``.pth.tar``, ``.pt``)."""
    text = str(name_or_path)
    spec = find_spec(text)
    if spec is not None and spec.kind != "reid":
        raise AutotrackError(f"{spec.name!r} is a {spec.kind} model, not a Re-ID embedder")
    if spec is not None or text.lower().endswith(".onnx"):
        providers = None
        if device is not None and str(device).lower() != "cpu":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return OnnxReidEmbedder(resolve_model(text), providers=providers)
    if text.lower().endswith(TORCH_SUFFIXES):
        try:
            from autotrack.reid.torch_embedder import TorchReidEmbedder
        except ImportError as exc:
            raise AutotrackError(
                f"{text}: torch checkpoints need PyTorch (pip install torch): {exc}") from None
        return TorchReidEmbedder.from_checkpoint(resolve_model(text), device=device)
    known = ", ".join(name for name, s in REGISTRY.items() if s.kind == "reid")
    raise ModelNotFoundError(
        f"unknown Re-ID model {text!r}: use a registry name ({known}), a Re-ID .onnx file "
        "or a torchreid OSNet checkpoint (.pth, .pth.tar, .pt)")


def __getattr__(name: str) -> Any:
    if name == "TorchReidEmbedder":  # imports torch: only on demand
        from autotrack.reid.torch_embedder import TorchReidEmbedder

        return TorchReidEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
