"""The two shapes every mask model takes here: an interactor and a streaming video segmenter.

Frames are (H, W, 3) uint8 **BGR** arrays (what OpenCV and :class:`autotrack.video.FrameSource`
give); implementations convert to what their network wants. Masks are (H, W) bool arrays at the
frame's size. Points and boxes are pixels, boxes ``(x1, y1, x2, y2)``.

A :class:`VideoSegmenter` is *streaming*: frames arrive in order through :meth:`step`, with the
prompts a user gave on that frame (new objects, or corrections of known ones). It never looks
back at frames it has not kept, and it keeps a fixed budget of memory over any video length:
that is why it is streaming and not SAM2's "load the whole video" predictor, whose per-frame
outputs grow until the GPU is full (sam2#196, #258). :meth:`memory_stats` reports what it holds,
so the benchmark can show the budget holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectPrompt:
    """What a user gave for one object on one frame: clicks, a box, a mask, or a mix.

    ``points`` is (K, 2) float pixels (x, y) with ``point_labels`` (K,) int: 1 positive,
    0 negative. Empty points with no box and no mask is not a prompt (``__post_init__``
    refuses it)."""

    object_id: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box: Box | None = None
    mask: np.ndarray | None = None  # (H, W) bool

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(self.point_labels, dtype=np.int32).reshape(-1)
        if len(points) != len(labels):
            raise ValueError("each point needs one label (1 positive, 0 negative)")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("point labels must be 1 (positive) or 0 (negative)")
        if not np.isfinite(points).all():
            raise ValueError("points must be finite")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "point_labels", labels)
        if self.box is not None:
            x1, y1, x2, y2 = (float(v) for v in self.box)
            if not (np.isfinite([x1, y1, x2, y2]).all() and x2 > x1 and y2 > y1):
                raise ValueError(f"box must be finite with x2 > x1 and y2 > y1, got {self.box}")
            object.__setattr__(self, "box", (x1, y1, x2, y2))
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.ndim != 2:
                raise ValueError("a mask prompt must be (H, W)")
            object.__setattr__(self, "mask", mask.astype(bool, copy=False))
        if not len(points) and self.box is None and self.mask is None:
            raise ValueError(f"object {self.object_id}: a prompt needs points, a box or a mask")


@dataclass(frozen=True)
class InteractorResult:
    mask: np.ndarray  # (H, W) bool
    score: float  # the model's own quality estimate, 0..1


class Interactor(Protocol):
    """Clicks and/or a box on one image -> one mask (CVAT's interactor)."""

    def segment(self, image: np.ndarray, prompt: ObjectPrompt) -> InteractorResult: ...


@dataclass(frozen=True)
class MemoryStats:
    """What a segmenter holds now: frames whose features it keeps, and their bytes."""

    frames_kept: int
    feature_bytes: int
    objects: int


class VideoSegmenter(Protocol):
    """Streaming video object segmentation with a bounded memory (see the module docstring)."""

    def step(self, image: np.ndarray,
             prompts: Sequence[ObjectPrompt] = ()) -> Mapping[int, np.ndarray]:
        """Masks of every known object on this frame, prompts applied: {object_id: (H, W) bool}.

        A prompt for a new id starts an object here; one for a known id corrects it. Objects
        lost from view get an empty mask, not a missing key, until :meth:`forget`."""
        ...

    def forget(self, object_id: int) -> None:
        """Stop following one object and free its memory."""
        ...

    def reset(self) -> None:
        """Back to no objects and no memory (a new video)."""
        ...

    def memory_stats(self) -> MemoryStats: ...
