"""What every detector offers trackers, plus the input checks and class filtering they share."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from autotrack.detections import Detections
from autotrack.errors import InputError


@runtime_checkable
class Detector(Protocol):
    """Per-frame object detector; class_ids in its Detections index class_names."""

    class_names: tuple[str, ...]

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Detections of one HxWx3 uint8 BGR frame (as cv2 reads it), boxes in its pixels."""
        ...


def makes_masks(detector: object) -> bool:
    """Whether a detector returns instance masks: its ``task`` is "segment" (ultralytics'
    name for segmentation models); detectors without the attribute make boxes only."""
    return getattr(detector, "task", "detect") == "segment"


def check_frame(frame_bgr: object) -> np.ndarray:
    """The frame as an array, or InputError: a clear message beats a crash deep in a runtime."""
    if not isinstance(frame_bgr, np.ndarray):
        raise InputError(f"frame must be a numpy array, got {type(frame_bgr).__name__}")
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise InputError(f"frame must be HxWx3 BGR, got shape {frame_bgr.shape}")
    if frame_bgr.dtype != np.uint8:
        raise InputError(f"frame must be uint8, got {frame_bgr.dtype}")
    if frame_bgr.shape[0] == 0 or frame_bgr.shape[1] == 0:
        raise InputError(f"frame is empty, shape {frame_bgr.shape}")
    return frame_bgr


def class_filter(
    class_names: Sequence[str], wanted: Iterable[str] | str | None
) -> np.ndarray | None:
    """Sorted class ids for the wanted names (case-insensitive); None (or empty) keeps all."""
    if wanted is None:
        return None
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    if not names:
        return None
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        index.setdefault(name.strip().lower(), i)
    ids = []
    for name in names:
        key = str(name).strip().lower()
        if key not in index:
            close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            sample = ", ".join(class_names[:5])
            raise InputError(
                f"unknown class name {name!r}; {hint}valid names include {sample} "
                f"({len(class_names)} in all)"
            )
        ids.append(index[key])
    return np.unique(np.asarray(ids, dtype=np.int64))


def filter_detections(detections: Detections, class_ids: np.ndarray | None) -> Detections:
    """Only the detections whose class is in class_ids; None keeps them all."""
    if class_ids is None:
        return detections
    return detections.select(np.isin(detections.class_ids, class_ids))
