"""ByteTrack (Zhang et al., ECCV 2022): associate every detection box, low scores included.

Faithful to the authors' tracker: high-score boxes are matched first against confirmed and
lost tracks (IoU fused with the detection score), the remaining tracked tracks then get a
second chance with the low-score boxes (occluded objects score low), unconfirmed tracks
(born last frame) are matched to what is left, and only high enough boxes start new tracks.
Lost tracks are kept for ``track_buffer`` frames (scaled to the frame rate) and can be
re-found under their old ID.

Unlike the reference code, tracks live in a struct of arrays rather than one Python object
per track, so Kalman prediction and update cost a few numpy calls per frame however crowded
the scene, and the whole state (ID allocator included) is plain arrays that serialise to
JSON exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Self

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.detections import Detections, TrackedObjects
from autotrack.errors import StateError
from autotrack.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from autotrack.kalman import KalmanFilterXYAH, covariance_is_valid
from autotrack.state import PayloadReader, decode_state, encode_state
from autotrack.trackers.base import config_from_dict

STATE_KIND = "bytetrack"
STATE_VERSION = 1


class TrackState(IntEnum):
    TRACKED = 1
    LOST = 2


# Plain floats for the hot path: enum attribute lookups cost more than the numpy work.
TRACKED = float(TrackState.TRACKED)
LOST = float(TrackState.LOST)


@dataclass(frozen=True)
class ByteTrackConfig:
    """The reference tracker's settings (MOT17 defaults), named for what they decide."""

    track_high_thresh: float = 0.5  # first-stage boxes: score above this
    track_low_thresh: float = 0.1  # second-stage boxes: score between low and high
    new_track_thresh: float = 0.6  # an unmatched box starts a track only above this
    match_thresh: float = 0.8  # first stage: max (1 - IoU * score)
    second_match_thresh: float = 0.5  # second stage: max (1 - IoU)
    unconfirmed_match_thresh: float = 0.7  # unconfirmed tracks: max (1 - IoU * score)
    duplicate_iou: float = 0.85  # a tracked and a lost track overlapping this much are one
    track_buffer: int = 30  # frames a lost track is kept, at 30 fps
    frame_rate: float = 30.0
    fuse_score: bool = True  # multiply IoU by the detection score (off in the MOT20 setting)

    def __post_init__(self) -> None:
        for name in ("track_high_thresh", "track_low_thresh", "new_track_thresh",
                     "match_thresh", "second_match_thresh", "unconfirmed_match_thresh",
                     "duplicate_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError("track_low_thresh must not exceed track_high_thresh")
        if not 0 <= self.track_buffer <= 100_000:
            raise ValueError(f"track_buffer must lie in [0, 100000], got {self.track_buffer}")
        if not 0.0 < self.frame_rate <= 1000.0:
            raise ValueError(f"frame_rate must lie in (0, 1000], got {self.frame_rate}")

    @property
    def max_time_lost(self) -> int:
        return int(self.frame_rate / 30.0 * self.track_buffer)


# Columns of the track table. One float64 matrix holds every per-track scalar so that
# reordering and growing the table cost one numpy call, not one per field; IDs and frame
# counters stay exact in float64 (integers up to 2**53).
ID, STATE, ACTIVATED, SCORE, CLASS, START, END, LENGTH = range(8)
MEAN = slice(8, 16)  # Kalman mean (cx, cy, a, h, and their velocities)
COVARIANCE = slice(16, 28)  # Kalman covariance blocks, (3, 4) flattened (see kalman.py)
WIDTH = 28
_INT_COLUMNS = {"ids": ID, "state": STATE, "class_id": CLASS, "start_frame": START,
                "end_frame": END, "tracklet_len": LENGTH}


class ByteTrack:
    """Online multi-object tracker; call :meth:`update` once per frame, in order.

    The table holds tracked tracks first (in the order they joined), then lost tracks,
    which is the order of the reference's lists, so ties resolve the same way.
    """

    def __init__(self, config: ByteTrackConfig | None = None) -> None:
        self.config = config or ByteTrackConfig()
        self.kalman = KalmanFilterXYAH()
        self.frame_id = 0
        self.next_id = 1  # this tracker's own ID allocator: IDs never collide across instances
        self._table = np.zeros((0, WIDTH))

    def _cost(self, rows: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
        """1 - IoU (times the detection score when fusing) between table rows and boxes."""
        similarity = iou_matrix(xyah_to_xyxy(self._table[rows, MEAN]), boxes)
        if scores is not None:
            similarity *= scores
        return 1.0 - similarity

    def update(self, detections: Detections) -> TrackedObjects:
        """Associate one frame's detections; returns the confirmed tracks seen in it."""
        cfg = self.config
        self.frame_id += 1
        boxes, scores, classes = detections.boxes, detections.scores, detections.class_ids
        # Zero-area or non-finite boxes would put inf into the Kalman state (a = w / h).
        valid = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                 & np.isfinite(boxes).all(axis=1) & np.isfinite(scores))
        high = np.nonzero(valid & (scores > cfg.track_high_thresh))[0]
        low = np.nonzero(valid & (scores > cfg.track_low_thresh)
                         & (scores < cfg.track_high_thresh))[0]
        fuse = scores[high] if cfg.fuse_score else None

        table = self._table
        state = table[:, STATE]
        unconfirmed_mask = (state == TRACKED) & (table[:, ACTIVATED] == 0)
        unconfirmed = np.nonzero(unconfirmed_mask)[0]
        # Tracked rows precede lost rows, so this is the reference's tracked + lost pool.
        pool = np.nonzero(~unconfirmed_mask)[0]

        # Predict the pool; a lost track's height velocity is frozen, as in the reference.
        # Unconfirmed tracks are not predicted (their velocity is zero; only the covariance
        # would change), again as in the reference.
        table[state == LOST, 15] = 0.0
        unconfirmed_cov = table[unconfirmed, COVARIANCE]
        mean, covariance = self.kalman.predict(table[:, MEAN], _blocks(table))
        table[:, MEAN] = mean
        table[:, COVARIANCE] = covariance.reshape(-1, 12)
        table[unconfirmed, COVARIANCE] = unconfirmed_cov

        # Stage 1: high-score boxes against confirmed and lost tracks.
        first = linear_assignment(self._cost(pool, boxes[high], fuse), cfg.match_thresh)
        matched_rows = [pool[first.rows]]
        matched_dets = [high[first.cols]]
        refound = matched_rows[0][state[matched_rows[0]] == LOST]

        # Stage 2: low-score boxes against tracks still tracked but unmatched.
        leftover = pool[first.unmatched_rows]
        leftover = leftover[state[leftover] == TRACKED]
        newly_lost = leftover
        if len(leftover) and len(low):
            second = linear_assignment(self._cost(leftover, boxes[low], None),
                                       cfg.second_match_thresh)
            matched_rows.append(leftover[second.rows])
            matched_dets.append(low[second.cols])
            newly_lost = leftover[second.unmatched_rows]

        # Stage 3: unconfirmed tracks against the high boxes nobody claimed.
        remaining = high[first.unmatched_cols]
        dropped = unconfirmed
        if len(unconfirmed) and len(remaining):
            third = linear_assignment(
                self._cost(unconfirmed, boxes[remaining],
                           scores[remaining] if cfg.fuse_score else None),
                cfg.unconfirmed_match_thresh)
            matched_rows.append(unconfirmed[third.rows])
            matched_dets.append(remaining[third.cols])
            dropped = unconfirmed[third.unmatched_rows]
            remaining = remaining[third.unmatched_cols]

        rows = np.concatenate(matched_rows)
        dets = np.concatenate(matched_dets)
        if len(rows):
            mean, covariance = self.kalman.update(
                table[rows, MEAN], _blocks(table[rows]), xyxy_to_xyah(boxes[dets]))
            table[rows, MEAN] = mean
            table[rows, COVARIANCE] = covariance.reshape(-1, 12)
            table[rows, LENGTH] = np.where(state[rows] == LOST, 0.0,
                                           table[rows, LENGTH] + 1)
            table[rows, STATE] = TRACKED
            table[rows, ACTIVATED] = 1.0
            table[rows, SCORE] = scores[dets]
            table[rows, CLASS] = classes[dets]
            table[rows, END] = self.frame_id
        table[newly_lost, STATE] = LOST

        # Lost tracks that waited too long go (tracks lost this very frame are not old).
        expired = (table[:, STATE] == LOST) & (
            self.frame_id - table[:, END] > cfg.max_time_lost)
        expired[newly_lost] = False

        births = remaining[scores[remaining] >= cfg.new_track_thresh]
        self._arrange(dropped, np.nonzero(expired)[0], newly_lost, refound,
                      boxes[births], scores[births], classes[births])
        return self._confirmed_output()

    def _arrange(self, dropped: np.ndarray, expired: np.ndarray, newly_lost: np.ndarray,
                 refound: np.ndarray, birth_boxes: np.ndarray, birth_scores: np.ndarray,
                 birth_classes: np.ndarray) -> None:
        """Append new tracks, drop removed ones and restore the reference's list order:
        tracked = [still tracked] + [new] + [re-found]; lost = [still lost] + [lost now]."""
        n = len(self._table)
        flags = np.zeros(n, dtype=np.int8)  # 0 keep in place, 1 re-found, 2 lost now, 3 gone
        flags[refound] = 1
        flags[newly_lost] = 2
        flags[dropped] = 3
        flags[expired] = 3
        tracked_now = self._table[:, STATE] == TRACKED
        born = len(birth_boxes)
        order = np.concatenate([
            np.nonzero(tracked_now & (flags == 0))[0],
            np.arange(n, n + born),
            np.nonzero(flags == 1)[0],
            np.nonzero(~tracked_now & (flags == 0))[0],
            np.nonzero(flags == 2)[0],
        ])
        if born:
            mean, covariance = self.kalman.initiate(xyxy_to_xyah(birth_boxes))
            new = np.zeros((born, WIDTH))
            new[:, ID] = np.arange(self.next_id, self.next_id + born)
            new[:, STATE] = TRACKED
            new[:, ACTIVATED] = float(self.frame_id == 1)
            new[:, SCORE] = birth_scores
            new[:, CLASS] = birth_classes
            new[:, START] = new[:, END] = self.frame_id
            new[:, MEAN] = mean
            new[:, COVARIANCE] = covariance.reshape(-1, 12)
            self.next_id += born
            self._table = np.concatenate([self._table, new])
        self._table = self._table[order]
        self._drop_duplicates()

    def _drop_duplicates(self) -> None:
        """A tracked and a lost track on the same object: keep the one followed longer."""
        table = self._table
        tracked = np.nonzero(table[:, STATE] == TRACKED)[0]
        lost = np.nonzero(table[:, STATE] == LOST)[0]
        if not len(tracked) or not len(lost):
            return
        boxes = xyah_to_xyxy(table[:, MEAN])
        p, q = np.nonzero(iou_matrix(boxes[tracked], boxes[lost]) > self.config.duplicate_iou)
        if not len(p):
            return
        p, q = tracked[p], lost[q]
        tracked_longer = table[p, START] < table[q, START]  # same as an older start frame
        keep = np.ones(len(table), dtype=bool)
        keep[q[tracked_longer]] = False
        keep[p[~tracked_longer]] = False
        self._table = table[keep]

    def _confirmed_output(self) -> TrackedObjects:
        table = self._table
        shown = table[(table[:, STATE] == TRACKED) & (table[:, ACTIVATED] == 1)]
        return TrackedObjects(
            track_ids=shown[:, ID].astype(np.int64),
            boxes=xyah_to_xyxy(shown[:, MEAN]),
            scores=shown[:, SCORE].copy(),
            class_ids=shown[:, CLASS].astype(np.int64),
        )

    # ------------------------------------------------------------------ state
    def to_state(self) -> str:
        """The whole tracker as a JSON string; :meth:`from_state` continues bit-exactly."""
        table = self._table
        columns = {name: table[:, col].astype(np.int64) for name, col in _INT_COLUMNS.items()}
        columns.update(activated=table[:, ACTIVATED] == 1, score=table[:, SCORE].copy(),
                       mean=table[:, MEAN].copy(), covariance=_blocks(table).copy())
        return encode_state(STATE_KIND, STATE_VERSION, {
            "config": asdict(self.config),
            "frame_id": self.frame_id,
            "next_id": self.next_id,
            "tracks": columns,
        })

    @classmethod
    def from_state(cls, text: str | bytes) -> Self:
        """Continue from :meth:`to_state` output; anything malformed is a StateError."""
        _, payload = decode_state(text, STATE_KIND, (STATE_VERSION,))
        reader = PayloadReader(payload)
        config = config_from_dict(ByteTrackConfig, reader.mapping("config"))
        frame_id = reader.integer("frame_id")
        next_id = reader.integer("next_id", minimum=1)
        columns = PayloadReader(reader.mapping("tracks"))
        n = len(columns.array("ids", "i", (None,)))
        table = np.zeros((n, WIDTH))
        for name, col in _INT_COLUMNS.items():
            table[:, col] = columns.array(name, "i", (n,))
        table[:, ACTIVATED] = columns.array("activated", "b", (n,))
        table[:, SCORE] = columns.array("score", "f", (n,))
        table[:, MEAN] = columns.array("mean", "f", (n, 8))
        covariance = columns.array("covariance", "f", (n, 3, 4)).astype(np.float64)
        if not covariance_is_valid(covariance):
            raise StateError("tracker state covariance is not positive definite")
        table[:, COVARIANCE] = covariance.reshape(-1, 12)
        _check_table(table, frame_id, next_id)
        tracker = cls(config)
        tracker.frame_id = frame_id
        tracker.next_id = next_id
        tracker._table = table
        return tracker


def _blocks(table: np.ndarray) -> np.ndarray:
    return table[:, COVARIANCE].reshape(-1, 3, 4)


def _check_table(table: np.ndarray, frame_id: int, next_id: int) -> None:
    """Refuse state that no ByteTrack run could have produced."""
    if next_id > 2**53:
        raise StateError("tracker state next_id is out of range")
    if not len(table):
        return
    ids = table[:, ID]
    if len(np.unique(ids)) != len(ids):
        raise StateError("tracker state has duplicate track IDs")
    if ids.min() < 1 or ids.max() >= next_id:
        raise StateError("tracker state has track IDs outside [1, next_id)")
    state = table[:, STATE]
    if not np.isin(state, [TrackState.TRACKED, TrackState.LOST]).all():
        raise StateError("tracker state has an unknown track state")
    start, end = table[:, START], table[:, END]
    if ((start < 1) | (start > end) | (end > frame_id) | (table[:, LENGTH] < 0)
            | (table[:, CLASS] < 0)).any():
        raise StateError("tracker state has inconsistent frame counters or classes")
    if ((table[:, SCORE] < 0) | (table[:, SCORE] > 1) | (table[:, 11] <= 0)).any():
        raise StateError("tracker state has out-of-range scores or box sizes")
    tracked = state == TrackState.TRACKED
    if len(tracked) > 1 and (np.diff(tracked.astype(np.int8)) > 0).any():
        raise StateError("tracker state lists a tracked track after a lost one")
