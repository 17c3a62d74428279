"""Run peer trackers (ultralytics' BYTETracker, roboflow ``trackers``) on our detections.

Benchmarks and agreement tests feed identical detections to our ByteTrack and to peers and
compare what comes out; these adapters convert in and out of each peer's own types. The
peers are optional dependencies (``ultralytics`` is AGPL, so never a core dependency):
they are imported only when called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from autotrack.detections import Detections, TrackedObjects
from autotrack.geometry import iou_matrix, xyxy_to_xywh
from autotrack.trackers.bytetrack import ByteTrackConfig


class _UltralyticsResults:
    """The slice of ultralytics' ``Boxes`` API that its trackers read."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        self.xyxy = boxes
        self.conf = scores
        self.cls = classes.astype(np.float64)
        centre_wh = xyxy_to_xywh(boxes)
        centre_wh[:, :2] += centre_wh[:, 2:] / 2
        self.xywh = centre_wh

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _UltralyticsResults:
        return _UltralyticsResults(self.xyxy[index], self.conf[index], self.cls[index])


def ultralytics_results(detections: Detections) -> _UltralyticsResults:
    """Detections in the form ultralytics' ``BYTETracker.update`` takes."""
    return _UltralyticsResults(detections.boxes, detections.scores, detections.class_ids)


def ultralytics_bytetrack(config: ByteTrackConfig) -> Any:
    """ultralytics' BYTETracker with the settings that correspond to ``config``.

    ultralytics 8.4 has no frame-rate scaling of the buffer and fixes the second-stage
    (0.5) and unconfirmed (0.7) thresholds, which equal ByteTrack's and our defaults.
    """
    from ultralytics.trackers.byte_tracker import BYTETracker

    args = SimpleNamespace(
        track_high_thresh=config.track_high_thresh,
        track_low_thresh=config.track_low_thresh,
        new_track_thresh=config.new_track_thresh,
        track_buffer=config.max_time_lost,
        match_thresh=config.match_thresh,
        fuse_score=config.fuse_score,
    )
    return BYTETracker(args)


def from_ultralytics(rows: np.ndarray) -> TrackedObjects:
    """ultralytics' (N, 8) output rows [x1, y1, x2, y2, id, score, cls, idx] as ours."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    return TrackedObjects(
        track_ids=rows[:, 4].astype(np.int64),
        boxes=rows[:, :4].copy(),
        scores=rows[:, 5].copy(),
        class_ids=rows[:, 6].astype(np.int64),
    )


def supervision_detections(detections: Detections) -> Any:
    """Detections in the form roboflow ``trackers`` takes (``supervision.Detections``)."""
    import supervision as sv

    return sv.Detections(
        xyxy=detections.boxes.astype(np.float32),
        confidence=detections.scores.astype(np.float32),
        class_id=detections.class_ids.astype(int),
    )


@dataclass(frozen=True)
class Agreement:
    """How far two trackers' outputs on the same detections coincide.

    Boxes are paired per frame by IoU; a paired box agrees when the ID mapping our ID ->
    their ID (taken from the pair counts over the whole run, one-to-one) sends ours to
    theirs. Unpaired boxes are output by one tracker only (e.g. a track confirmed a frame
    earlier by one of them).
    """

    paired: int
    agreeing: int
    only_ours: int
    only_theirs: int
    max_box_difference: float  # px, over paired boxes

    @property
    def rate(self) -> float:
        total = self.paired + self.only_ours + self.only_theirs
        return self.agreeing / total if total else 1.0


def agreement(ours: Sequence[TrackedObjects], theirs: Sequence[TrackedObjects],
              min_iou: float = 0.99) -> Agreement:
    if len(ours) != len(theirs):
        raise ValueError("both runs must cover the same frames")
    pairs: list[tuple[int, int, int]] = []  # (frame, our id, their id)
    only_ours = only_theirs = 0
    max_difference = 0.0
    for frame, (a, b) in enumerate(zip(ours, theirs)):
        overlap = iou_matrix(a.boxes, b.boxes)
        matched_a, matched_b = set(), set()
        for i, j in zip(*np.nonzero(overlap >= min_iou)):
            if i in matched_a or j in matched_b:
                continue
            matched_a.add(i)
            matched_b.add(j)
            pairs.append((frame, int(a.track_ids[i]), int(b.track_ids[j])))
            max_difference = max(max_difference, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
        only_ours += len(a) - len(matched_a)
        only_theirs += len(b) - len(matched_b)
    counts = Counter((o, t) for _, o, t in pairs)
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for (o, t), _ in counts.most_common():
        if o not in mapping and t not in used:
            mapping[o] = t
            used.add(t)
    agreeing = sum(1 for _, o, t in pairs if mapping.get(o) == t)
    return Agreement(len(pairs), agreeing, only_ours, only_theirs, max_difference)
