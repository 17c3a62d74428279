"""XMem (Cheng & Schwing, ECCV 2022): long-term video object segmentation with an
Atkinson-Shiffrin memory (sensory, working, long-term), as a streaming
:class:`~autotrack.vos.base.VideoSegmenter` whose memory stays bounded over any video length.

``build_xmem_segmenter()`` loads an official checkpoint (``checkpoint``, else
``AUTOTRACK_XMEM_CHECKPOINT``); without one it refuses with a one-line
:class:`~autotrack.errors.ModelNotFoundError`. Users never get random weights by accident:
``random_init=True`` (tests, benchmarks) is the only way to them, and then ``seed`` picks the
deterministic init (:func:`~autotrack.vos.xmem.checkpoint.random_state_dict`) and the
environment variable is ignored. ``seed`` plays no part when a checkpoint is loaded.

XMem starts objects from masks: a box prompt becomes a filled rectangle mask and clicks alone
are a ``ValueError`` (see :mod:`autotrack.vos.xmem.segmenter`). ``**budget`` sets the memory
(:class:`~autotrack.vos.xmem.memory.MemoryBudget`, official defaults): ``mem_every``,
``deep_update_every``, ``top_k``, ``max_mid_term_frames``, ``min_mid_term_frames``,
``max_long_term_elements``, ``num_prototypes``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from autotrack.errors import AutotrackError
from autotrack.vos.xmem.checkpoint import (
    CHECKPOINT_ENV,
    RELEASE_URL,
    load_checkpoint,
    random_xmem,
    resolve_checkpoint,
)
from autotrack.vos.xmem.memory import MemoryBudget
from autotrack.vos.xmem.network import XMem, XMemDims
from autotrack.vos.xmem.segmenter import XMemProcessor, XMemSegmenter

__all__ = ["CHECKPOINT_ENV", "RELEASE_URL", "MemoryBudget", "XMem", "XMemDims",
           "XMemProcessor", "XMemSegmenter", "build_xmem_segmenter", "make_budget"]


def make_budget(**budget: int) -> MemoryBudget:
    """A :class:`MemoryBudget` from keyword settings; unknown names are a ``ValueError``."""
    known = {f.name for f in dataclasses.fields(MemoryBudget)}
    unknown = sorted(set(budget) - known)
    if unknown:
        raise ValueError(f"unknown XMem memory setting(s) {', '.join(unknown)}: one of "
                         f"{', '.join(sorted(known))}")
    return MemoryBudget(**budget)


def build_xmem_segmenter(checkpoint: str | Path | None = None, seed: int = 0,
                         device: str = "cpu", size: int = 480, random_init: bool = False,
                         **budget: int) -> XMemSegmenter:
    """An XMem segmenter from an official checkpoint (or, with ``random_init=True`` only, from
    seeded random weights); see the module docstring."""
    memory = make_budget(**budget)
    if random_init:
        if checkpoint:
            raise ValueError("give a checkpoint or random_init=True, not both")
        network = random_xmem(seed)
    else:
        network = load_checkpoint(resolve_checkpoint(checkpoint))
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise AutotrackError(f"unknown torch device {device!r}: cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutotrackError(f"device {device!r} asked for, but torch sees no CUDA device")
    return XMemSegmenter(network, memory, size=size, device=dev)
