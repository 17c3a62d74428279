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

from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Self

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.detections import Detections, TrackedObjects
from autotrack.errors import StateError
from autotrack.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from autotrack.kalman import STATE_SIZE, KalmanFilterXYAH, covariance_is_valid
from autotrack.state import PayloadReader, decode_state, encode_state
from autotrack.trackers.base import (
    camera_shift_array,
    check_buffer,
    check_fractions,
    config_from_dict,
)

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
    # Report each track's matched detection box (what the detector saw this frame) instead
    # of the Kalman posterior the reference reports: closer to the object when the filter
    # lags, but as jittery as the detector (so more keyframes in CVAT).
    report_detection_boxes: bool = False
    # The Kalman filter's velocity noise (ByteTrack's 1/160 of the box height per frame) times
    # this. 1 is the reference; below 10 frames/s the offline annotation raises it (see
    # autotrack.tracking_options), as a walker's velocity per frame changes more between
    # frames far apart and a filter that adapts slowly loses people (MOT17 at 7.5 fps).
    velocity_noise_scale: float = 1.0
    # Second stage: a low-score box more than this many times shorter than a track's
    # predicted height cannot extend it (0: off, the reference; the offline annotation uses
    # 1.2, see autotrack.tracking_options). Such a box can be a sliver of a person going
    # behind someone; taken, it drags the filter's box down and off the person, who is then
    # not re-found when they come out.
    second_max_shrink: float = 0.0

    def __post_init__(self) -> None:
        check_fractions(self, ("track_high_thresh", "track_low_thresh", "new_track_thresh",
                               "match_thresh", "second_match_thresh",
                               "unconfirmed_match_thresh", "duplicate_iou"))
        if not 0.1 <= self.velocity_noise_scale <= 100.0:
            raise ValueError("velocity_noise_scale must lie in [0.1, 100], got "
                             f"{self.velocity_noise_scale}")
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError("track_low_thresh must not exceed track_high_thresh")
        check_buffer(self)
        if self.second_max_shrink and not 1.0 <= self.second_max_shrink <= 1e6:
            raise ValueError("second_max_shrink must be 0 or lie in [1, 1e6], got "
                             f"{self.second_max_shrink}")

    @property
    def max_time_lost(self) -> int:
        return int(self.frame_rate / 30.0 * self.track_buffer)


# Columns of the track table. One float64 matrix holds every per-track scalar so that
# reordering and growing the table cost one numpy call, not one per field; IDs and frame
# counters stay exact in float64 (integers up to 2**53).
ID, STATE, ACTIVATED, SCORE, CLASS, START, END, LENGTH = range(8)
KALMAN = slice(8, 28)  # the Kalman filter's packed state (see kalman.py)
MEAN = slice(8, 16)  # its mean: cx, cy, a, h and their velocities
CENTRE = slice(8, 10)  # cx, cy of the mean
COVARIANCE = slice(16, 28)
HEIGHT = 11  # h of the mean
VELOCITY_H = 15
DETECTION = slice(28, 32)  # the box of the detection matched last (xyxy)
WIDTH = 32
_INT_COLUMNS = {"ids": ID, "state": STATE, "class_id": CLASS, "start_frame": START,
                "end_frame": END, "tracklet_len": LENGTH}


class ByteTrack:
    """Online multi-object tracker; call :meth:`update` once per frame, in order.

    The table holds tracked tracks first (in the order they joined), then lost tracks,
    which is the order of the reference's lists, so ties resolve the same way.
    """

    def __init__(self, config: ByteTrackConfig | None = None) -> None:
        self.config = config or ByteTrackConfig()
        self.kalman = KalmanFilterXYAH(std_weight_velocity=KalmanFilterXYAH.std_weight_velocity
                                       * self.config.velocity_noise_scale)
        self.frame_id = 0
        self.next_id = 1  # this tracker's own ID allocator: IDs never collide across instances
        self._table = np.zeros((0, WIDTH))

    @staticmethod
    def _cost(iou: np.ndarray, rows: np.ndarray | None, cols: np.ndarray,
              scores: np.ndarray | None) -> np.ndarray:
        """1 - IoU (times the detection score when fusing) for some tracks (None: all)."""
        similarity = (iou if rows is None else iou[rows])[:, cols]
        if scores is not None:
            similarity *= scores[cols]
        return 1.0 - similarity

    def update(self, detections: Detections, *, frame: np.ndarray | None = None,
               camera_shift: np.ndarray | None = None) -> TrackedObjects:
        """Associate one frame's detections; returns the confirmed tracks seen in it.
        ``frame`` is ignored: ByteTrack uses no appearance. ``camera_shift`` (dx, dy): how far
        the camera's motion moved the scene since the previous call
        (:mod:`autotrack.camera_motion`); every prediction moves with it before matching."""
        cfg = self.config
        self.frame_id += 1
        boxes, scores, classes = detections.boxes, detections.scores, detections.class_ids
        # Zero-area or non-finite boxes would put inf into the Kalman state (a = w / h).
        size = boxes[:, 2:] - boxes[:, :2]  # NaN or inf anywhere fails one of the tests
        valid = np.logical_and.reduce((size > 0) & (size < np.inf), axis=1) & np.isfinite(scores)
        high = (valid & (scores > cfg.track_high_thresh)).nonzero()[0]
        low = (valid & (scores > cfg.track_low_thresh)
               & (scores < cfg.track_high_thresh)).nonzero()[0]
        fuse = scores if cfg.fuse_score else None

        table = self._table
        state = table[:, STATE]
        unconfirmed_mask = (state == TRACKED) & (table[:, ACTIVATED] == 0)
        unconfirmed = unconfirmed_mask.nonzero()[0]
        # Tracked rows precede lost rows, so this is the reference's tracked + lost pool.
        pool = (~unconfirmed_mask).nonzero()[0]
        self._predict(unconfirmed)
        self._move(camera_shift)
        # One IoU matrix, tracks x boxes, serves all three stages.
        iou = iou_matrix(xyah_to_xyxy(table[:, MEAN]), boxes)

        # Stage 1: high-score boxes against confirmed and lost tracks.
        first = linear_assignment(
            self._cost(iou, pool if len(unconfirmed) else None, high, fuse), cfg.match_thresh)
        matched_rows = [pool[first.rows]]
        matched_dets = [high[first.cols]]
        refound = matched_rows[0][state[matched_rows[0]] == LOST]

        # Stage 2: low-score boxes against tracks still tracked but unmatched.
        leftover = pool[first.unmatched_rows]
        leftover = leftover[state[leftover] == TRACKED]
        newly_lost = leftover
        if len(leftover) and len(low):
            cost = self._cost(iou, leftover, low, None)
            if cfg.second_max_shrink:
                heights = boxes[low, 3] - boxes[low, 1]
                cost[heights[None, :] * cfg.second_max_shrink
                     < table[leftover, HEIGHT, None]] = 1.0  # above every threshold
            second = linear_assignment(cost, cfg.second_match_thresh)
            matched_rows.append(leftover[second.rows])
            matched_dets.append(low[second.cols])
            newly_lost = leftover[second.unmatched_rows]

        # Stage 3: unconfirmed tracks against the high boxes nobody claimed.
        remaining = high[first.unmatched_cols]
        dropped = unconfirmed
        confirmed_late = None
        if len(unconfirmed) and len(remaining):
            third = linear_assignment(self._cost(iou, unconfirmed, remaining, fuse),
                                      cfg.unconfirmed_match_thresh)
            confirmed_late = table[unconfirmed[third.rows]]  # as born, before this update
            matched_rows.append(unconfirmed[third.rows])
            matched_dets.append(remaining[third.cols])
            dropped = unconfirmed[third.unmatched_rows]
            remaining = remaining[third.unmatched_cols]

        rows = np.concatenate(matched_rows)
        dets = np.concatenate(matched_dets)
        if len(rows):
            matched = table[rows]  # edit a compact copy, write it back once
            matched_boxes = boxes[dets]
            kalman_state = matched[:, KALMAN]
            self.kalman.update(kalman_state, xyxy_to_xyah(matched_boxes), out=kalman_state)
            matched[:, DETECTION] = matched_boxes
            length = matched[:, LENGTH]
            length += 1
            length[matched[:, STATE] == LOST] = 0.0  # a re-found track starts counting again
            matched[:, STATE:ACTIVATED + 1] = (TRACKED, 1.0)
            matched[:, SCORE] = scores[dets]
            matched[:, CLASS] = classes[dets]
            matched[:, END] = self.frame_id
            table[rows] = matched
        table[newly_lost, STATE] = LOST

        # Lost tracks that waited too long go (tracks lost this very frame are not old).
        expired = (table[:, STATE] == LOST) & (
            self.frame_id - table[:, END] > cfg.max_time_lost)
        expired[newly_lost] = False

        births = remaining[scores[remaining] >= cfg.new_track_thresh]
        self._arrange(dropped, expired.nonzero()[0], newly_lost, refound,
                      boxes[births], scores[births], classes[births])
        output = self._confirmed_output()
        if confirmed_late is not None and len(confirmed_late):
            output = replace(output, first_seen_previous_frame=TrackedObjects(
                track_ids=confirmed_late[:, ID].astype(np.int64),
                boxes=confirmed_late[:, DETECTION].copy(),
                scores=confirmed_late[:, SCORE].copy(),
                class_ids=confirmed_late[:, CLASS].astype(np.int64),
            ))
        return output

    def advance(self, camera_shift: np.ndarray | None = None) -> None:
        """One frame passes without detections (``autotrack annotate --detect-every``):
        every track's prediction moves a frame on, and nothing is matched, lost or
        dropped; the next :meth:`update` matches against predictions for its own frame, and
        a lost track's time runs in frames, so the buffer means the same seconds."""
        self.frame_id += 1
        table = self._table
        self._predict(((table[:, STATE] == TRACKED) & (table[:, ACTIVATED] == 0)).nonzero()[0])
        self._move(camera_shift)

    def _move(self, camera_shift: np.ndarray | None) -> None:
        """Every track's box centre moved by the camera's shift (None: a still camera). The
        velocity stays: it is the object's own motion once the camera's is taken out."""
        if camera_shift is None:
            return
        self._table[:, CENTRE] += camera_shift_array(camera_shift)

    def _predict(self, unconfirmed: np.ndarray) -> None:
        """Predict the pool; a lost track's height velocity is frozen, as in the reference.
        Unconfirmed tracks are not predicted (their velocity is zero; only the covariance
        would change), again as in the reference."""
        table = self._table
        table[table[:, STATE] == LOST, VELOCITY_H] = 0.0
        if len(unconfirmed):
            unconfirmed_cov = table[unconfirmed, COVARIANCE]
            table[:, KALMAN] = self.kalman.predict(table[:, KALMAN])
            table[unconfirmed, COVARIANCE] = unconfirmed_cov
        else:
            table[:, KALMAN] = self.kalman.predict(table[:, KALMAN])

    def _arrange(self, dropped: np.ndarray, expired: np.ndarray, newly_lost: np.ndarray,
                 refound: np.ndarray, birth_boxes: np.ndarray, birth_scores: np.ndarray,
                 birth_classes: np.ndarray) -> None:
        """Append new tracks, drop removed ones and restore the reference's list order:
        tracked = [still tracked] + [new] + [re-found]; lost = [still lost] + [lost now]."""
        born = len(birth_boxes)
        if not (born or len(dropped) or len(expired) or len(newly_lost) or len(refound)):
            return  # no row joins, leaves or changes list: the order stands
        # Sort rows by where they belong; a stable sort keeps each group's own order.
        group = np.where(self._table[:, STATE] == TRACKED, _STILL_TRACKED, _STILL_LOST)
        group[refound] = _REFOUND
        group[newly_lost] = _LOST_NOW
        group[dropped] = _GONE
        group[expired] = _GONE
        if born:
            group = np.concatenate([group, np.full(born, _NEW, dtype=group.dtype)])
        order = group.argsort(kind="stable")[: len(group) - np.add.reduce(group == _GONE)]
        if born:
            new = np.zeros((born, WIDTH))
            new[:, ID] = np.arange(self.next_id, self.next_id + born)
            new[:, STATE] = TRACKED
            new[:, ACTIVATED] = float(self.frame_id == 1)
            new[:, SCORE] = birth_scores
            new[:, CLASS] = birth_classes
            new[:, START] = new[:, END] = self.frame_id
            new[:, KALMAN] = self.kalman.initiate(xyxy_to_xyah(birth_boxes))
            new[:, DETECTION] = birth_boxes
            self.next_id += born
            self._table = np.concatenate([self._table, new])
        self._table = self._table[order]

    def _drop_duplicates(self, boxes: np.ndarray) -> np.ndarray:
        """A tracked and a lost track on the same object: keep the one followed longer.
        Returns the boxes of the rows kept."""
        table = self._table
        n_tracked = len(table) - np.add.reduce(table[:, STATE] == LOST)
        if n_tracked == 0 or n_tracked == len(table):
            return boxes
        # The table lists tracked rows before lost rows. IoU > t needs the boxes to overlap
        # in x by more than t times the wider one: a cheap screen that rules out most pairs.
        tracked, lost = boxes[:n_tracked], boxes[n_tracked:]
        threshold = self.config.duplicate_iou
        overlap_x = np.minimum.outer(tracked[:, 2], lost[:, 2])
        overlap_x -= np.maximum.outer(tracked[:, 0], lost[:, 0])
        wider = np.maximum.outer(tracked[:, 2] - tracked[:, 0], lost[:, 2] - lost[:, 0])
        if not np.logical_or.reduce(overlap_x > threshold * wider, axis=None):
            return boxes
        p, q = (iou_matrix(tracked, lost) > threshold).nonzero()
        if not len(p):
            return boxes
        q += n_tracked
        followed = table[:, END] - table[:, START]
        tracked_longer = followed[p] > followed[q]
        keep = np.ones(len(table), dtype=bool)
        keep[q[tracked_longer]] = False
        keep[p[~tracked_longer]] = False
        self._table = table[keep]
        return boxes[keep]

    def _confirmed_output(self) -> TrackedObjects:
        boxes = self._drop_duplicates(xyah_to_xyxy(self._table[:, MEAN]))
        table = self._table
        shown = (table[:, STATE] == TRACKED) & (table[:, ACTIVATED] == 1)
        rows = table[shown]
        return TrackedObjects(
            track_ids=rows[:, ID].astype(np.int64),
            boxes=rows[:, DETECTION] if self.config.report_detection_boxes else boxes[shown],
            scores=rows[:, SCORE],
            class_ids=rows[:, CLASS].astype(np.int64),
        )

    # ------------------------------------------------------------------ state
    def to_state(self) -> str:
        """The whole tracker as a JSON string; :meth:`from_state` continues bit-exactly."""
        table = self._table
        columns = {name: table[:, col].astype(np.int64) for name, col in _INT_COLUMNS.items()}
        columns.update(activated=table[:, ACTIVATED] == 1, score=table[:, SCORE].copy(),
                       kalman=table[:, KALMAN].copy(), detection=table[:, DETECTION].copy())
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
        table[:, KALMAN] = columns.array("kalman", "f", (n, STATE_SIZE))
        table[:, DETECTION] = columns.array("detection", "f", (n, 4))
        if not covariance_is_valid(table[:, KALMAN]):
            raise StateError("tracker state covariance is not positive definite")
        _check_table(table, frame_id, next_id)
        tracker = cls(config)
        tracker.frame_id = frame_id
        tracker.next_id = next_id
        tracker._table = table
        return tracker


_STILL_TRACKED, _NEW, _REFOUND, _STILL_LOST, _LOST_NOW, _GONE = range(6)


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
    if ((table[:, SCORE] < 0) | (table[:, SCORE] > 1) | (table[:, HEIGHT] <= 0)).any():
        raise StateError("tracker state has out-of-range scores or box sizes")
    tracked = state == TrackState.TRACKED
    if len(tracked) > 1 and (np.diff(tracked.astype(np.int8)) > 0).any():
        raise StateError("tracker state lists a tracked track after a lost one")
