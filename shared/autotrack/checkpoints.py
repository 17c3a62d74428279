"""Reading torch checkpoints a user supplies: weights only, never pickled code, one-line errors.

Every torch model here (Re-ID OSNet, SAM2, SAM3, XMem) reads its file through
:func:`read_weights_only`, so a foreign or code-carrying file is refused the same way."""

from __future__ import annotations

from pathlib import Path

from autotrack.errors import AutotrackError


def read_weights_only(path: str | Path, error: type[AutotrackError] = AutotrackError) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is one ``error`` line."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        raise error(f"{path}: cannot read it as a weights-only torch checkpoint "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
