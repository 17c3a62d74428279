"""Whole-video tracks built from per-frame tracker output."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from autotrack.detections import TrackedObjects


@dataclass(frozen=True)
class Track:
    """One object over the video: the frames where the tracker saw it and its box there.

    ``frames`` is strictly increasing; frames missing from it are frames where the object
    was not seen (lost, occluded, or out of view).
    """

    track_id: int
    class_id: int
    frames: np.ndarray  # (K,) int64, strictly increasing
    boxes: np.ndarray  # (K, 4) float64 xyxy
    scores: np.ndarray  # (K,) float64

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])


class TrackCollector:
    """Accumulates a tracker's per-frame output into :class:`Track` objects.

    A track's class is the score-weighted vote of the detections it was matched to, so a
    single misclassified frame does not relabel a whole track.
    """

    def __init__(self) -> None:
        self._frames: dict[int, list[int]] = defaultdict(list)
        self._boxes: dict[int, list[np.ndarray]] = defaultdict(list)
        self._scores: dict[int, list[float]] = defaultdict(list)
        self._class_votes: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, frame: int, objects: TrackedObjects, step: int = 1) -> None:
        """Record one frame's output; tracks confirmed late also get the frame before
        (``step`` frames before: the tracker saw every ``step``-th frame only)."""
        earlier = []  # DeepSORT nests one object per frame it waited to confirm a track
        previous, at = objects.first_seen_previous_frame, frame - step
        while previous is not None and at >= 0:
            earlier.append((at, previous))
            previous, at = previous.first_seen_previous_frame, at - step
        for at, previous in reversed(earlier):
            self._add(at, previous)
        self._add(frame, objects)

    def _add(self, frame: int, objects: TrackedObjects) -> None:
        for track_id, box, score, class_id in zip(
            objects.track_ids.tolist(), objects.boxes, objects.scores.tolist(),
            objects.class_ids.tolist(),
        ):
            frames = self._frames[track_id]
            if frames and frames[-1] >= frame:
                raise ValueError(f"track {track_id}: frame {frame} added after frame {frames[-1]}")
            frames.append(frame)
            self._boxes[track_id].append(box)
            self._scores[track_id].append(score)
            self._class_votes[track_id][class_id] += max(score, 1e-6)

    def tracks(self) -> list[Track]:
        """All tracks, ordered by first frame then ID."""
        result = []
        for track_id, frames in self._frames.items():
            votes = self._class_votes[track_id]
            class_id = max(votes, key=lambda c: (votes[c], -c))
            result.append(
                Track(
                    track_id=track_id,
                    class_id=class_id,
                    frames=np.asarray(frames, dtype=np.int64),
                    boxes=np.asarray(self._boxes[track_id], dtype=np.float64).reshape(-1, 4),
                    scores=np.asarray(self._scores[track_id], dtype=np.float64),
                )
            )
        result.sort(key=lambda t: (t.first_frame, t.track_id))
        return result
