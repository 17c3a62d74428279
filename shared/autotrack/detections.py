"""Per-frame detector output, the one currency between detectors and trackers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """N detections of one frame: xyxy pixel boxes, confidences and class indices."""

    boxes: np.ndarray  # (N, 4) float64, x1 y1 x2 y2 in pixels
    scores: np.ndarray  # (N,) float64 in [0, 1]
    class_ids: np.ndarray  # (N,) int64, indices into the detector's class_names
    masks: np.ndarray | None = None  # (N, H, W) bool instance masks, from segmentation models

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(class_ids)):
            raise ValueError(
                f"detections disagree in length: {len(boxes)} boxes, "
                f"{len(scores)} scores, {len(class_ids)} class ids"
            )
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.ndim != 3 or len(masks) != len(boxes):
                raise ValueError(f"masks must be (N, H, W) for N={len(boxes)}, got {masks.shape}")
            object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))

    def select(self, mask_or_index: np.ndarray) -> Detections:
        """The subset picked by a boolean mask or an index array."""
        return Detections(
            self.boxes[mask_or_index], self.scores[mask_or_index], self.class_ids[mask_or_index],
            None if self.masks is None else self.masks[mask_or_index],
        )


@dataclass(frozen=True)
class TrackedObjects:
    """What a tracker reports for one frame: the confirmed tracks it saw there."""

    track_ids: np.ndarray  # (M,) int64, stable across frames
    boxes: np.ndarray  # (M, 4) float64 xyxy
    scores: np.ndarray  # (M,) float64, confidence of the matched detection
    class_ids: np.ndarray  # (M,) int64
    # Tracks confirmed in this frame, as they were detected in the previous frame. An online
    # tracker reports a track only once confirmed; offline annotation can add that frame.
    first_seen_previous_frame: TrackedObjects | None = None

    def __len__(self) -> int:
        return len(self.track_ids)

    @classmethod
    def empty(cls) -> TrackedObjects:
        return cls(
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
        )
