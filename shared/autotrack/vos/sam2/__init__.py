"""SAM2 (Meta's official ``sam2`` package) as an :class:`~autotrack.vos.base.Interactor` and a
streaming :class:`~autotrack.vos.base.VideoSegmenter`.

``torch`` and ``sam2`` are imported here: import this package only where SAM2 is wanted.
Weights: ``checkpoint=`` or ``$AUTOTRACK_SAM2_CHECKPOINT`` (official ``{"model": state_dict}``
files, e.g. https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt for
the default config); ``random_init=True`` builds seeded random weights instead (tests,
benchmarks). ``image_size`` (a multiple of 32, default 1024) trades detail for speed.
"""

from __future__ import annotations

import os

from autotrack.vos.sam2.interactor import Sam2Interactor
from autotrack.vos.sam2.model import (
    CONFIGS,
    DEFAULT_CONFIG,
    ENV_CHECKPOINT,
    Sam2CheckpointError,
    build_sam2_model,
    config_names,
)
from autotrack.vos.sam2.segmenter import Sam2Segmenter


def build_sam2_interactor(checkpoint: str | os.PathLike | None = None,
                          config: str = DEFAULT_CONFIG, image_size: int | None = None,
                          seed: int = 0, device: str = "cpu", *, random_init: bool = False,
                          cache_size: int = 4) -> Sam2Interactor:
    """A SAM2 click/box interactor (see :class:`Sam2Interactor`)."""
    model = build_sam2_model(checkpoint, config, image_size, seed, device, random_init)
    return Sam2Interactor(model, cache_size=cache_size)


def build_sam2_segmenter(checkpoint: str | os.PathLike | None = None,
                         config: str = DEFAULT_CONFIG, image_size: int | None = None,
                         seed: int = 0, device: str = "cpu", *, random_init: bool = False,
                         **budget: int) -> Sam2Segmenter:
    """A streaming SAM2 video segmenter; ``budget``: ``max_cond_frames`` (4), ``max_objects``
    (32) (see :class:`Sam2Segmenter`)."""
    unknown = set(budget) - {"max_cond_frames", "max_objects"}
    if unknown:
        raise TypeError(f"unknown SAM2 segmenter budget {sorted(unknown)}; "
                        "use max_cond_frames, max_objects")
    model = build_sam2_model(checkpoint, config, image_size, seed, device, random_init)
    return Sam2Segmenter(model, **budget)


__all__ = [
    "CONFIGS",
    "ENV_CHECKPOINT",
    "Sam2CheckpointError",
    "Sam2Interactor",
    "Sam2Segmenter",
    "build_sam2_interactor",
    "build_sam2_model",
    "build_sam2_segmenter",
    "config_names",
]
