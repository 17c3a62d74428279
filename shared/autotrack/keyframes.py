"""Thin a per-frame track into the few keyframes CVAT needs to redraw it.

CVAT stores a track as keyframes and linearly interpolates every coordinate between
them; a frame with ``outside`` set hides the object until the next visible keyframe.
Uploading every tracked frame as a keyframe makes tracks tedious to correct (each edit
must be repeated on every frame), so we keep only the frames interpolation cannot
reproduce within an IoU tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotrack.geometry import paired_iou
from autotrack.tracks import Track

# Candidate segment ends checked exhaustively before switching to doubling + bisection.
_FIRST_BLOCK = 32


# Where CVAT's interpolation may drift from the tracker's box before a keyframe is kept.
# Detector boxes jitter: on vtest.avi (YOLOX-Nano + ByteTrack) even the midpoint of the two
# neighbouring frames misses one box in ten by IoU < 0.9, so 0.9 would keyframe noise; 0.85
# keeps keyframes where the motion changes (15.6% of tracked frames there; 23.9% at 0.9).
DEFAULT_KEYFRAME_IOU = 0.85

@dataclass(frozen=True)
class Keyframe:
    """One CVAT track shape: a box at a frame, or the marker that the object left view."""

    frame: int
    box: tuple[float, float, float, float]  # xyxy pixels
    outside: bool
    occluded: bool = False


@dataclass(frozen=True)
class KeyframeStats:
    """How much thinning saved: visible keyframes against frames the tracker reported."""

    tracks: int
    tracked_frames: int
    keyframes: int  # visible (outside=False) keyframes
    outside_keyframes: int

    @property
    def ratio(self) -> float:
        """Visible keyframes per tracked frame (0 when nothing was tracked)."""
        return self.keyframes / self.tracked_frames if self.tracked_frames else 0.0

    def __str__(self) -> str:
        return (
            f"{self.keyframes} keyframes for {self.tracked_frames} tracked frames "
            f"({100 * self.ratio:.1f}%) in {self.tracks} tracks, "
            f"{self.outside_keyframes} outside markers"
        )


def _lerp(box0: np.ndarray, box1: np.ndarray, frame0, frame1, frame) -> np.ndarray:
    """CVAT's rectangle interpolation; thinning and reading back share it bit for bit."""
    offset = (frame - frame0) / (frame1 - frame0)
    return box0 + (box1 - box0) * offset[..., None]


def _fits(
    frames: np.ndarray, boxes: np.ndarray, start: int, ends: np.ndarray, min_iou: float
) -> np.ndarray:
    """For each candidate end, whether interpolating from ``start`` fits every frame between."""
    mids = np.arange(start + 1, int(ends.max()))
    interp = _lerp(
        boxes[start], boxes[ends][:, None, :], frames[start], frames[ends][:, None], frames[mids]
    )  # (ends, mids, 4)
    truth = np.broadcast_to(boxes[mids], interp.shape)
    iou = paired_iou(interp.reshape(-1, 4), truth.reshape(-1, 4)).reshape(interp.shape[:2])
    return np.all((iou >= min_iou) | (mids[None, :] >= ends[:, None]), axis=1)


def _segment_end(
    frames: np.ndarray, boxes: np.ndarray, start: int, stop: int, min_iou: float
) -> int:
    """An index in (start, stop] that one interpolated segment from ``start`` can reach.

    The first ``_FIRST_BLOCK`` candidate ends are checked in one vectorised step and the
    segment ends just before the first that fails, the usual case for moving objects. A
    segment that survives them (a slow or parked object) is extended by doubling steps and
    the boundary then bisected, so a long static track costs O(n log n) instead of O(n^2).
    """
    near = np.arange(start + 2, min(stop, start + _FIRST_BLOCK) + 1)
    if len(near):
        fits = _fits(frames, boxes, start, near, min_iou)
        if not fits.all():
            return int(near[np.argmin(fits)]) - 1
    good = min(stop, start + _FIRST_BLOCK)
    step = _FIRST_BLOCK
    while good < stop:
        probe = min(stop, good + step)
        if not _fits(frames, boxes, start, np.array([probe]), min_iou)[0]:
            bad = probe
            while bad - good > 1:
                mid = (good + bad) // 2
                if _fits(frames, boxes, start, np.array([mid]), min_iou)[0]:
                    good = mid
                else:
                    bad = mid
            return good
        good = probe
        step *= 2
    return stop


def _runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index pairs of the stretches of consecutive frames."""
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks - 1, [len(frames) - 1]])
    return list(zip(starts.tolist(), stops.tolist()))


def _as_box(row: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in row)
    return (x1, y1, x2, y2)


def thin_keyframes(
    track: Track, min_iou: float = DEFAULT_KEYFRAME_IOU, last_frame: int | None = None
) -> list[Keyframe]:
    """The keyframes from which CVAT's interpolation redraws ``track`` within ``min_iou``.

    Every tracked frame, interpolated from the kept keyframes, has IoU >= ``min_iou`` with
    the tracker's box. Frames the tracker skipped become hidden: each run of consecutive
    frames is closed by an outside keyframe on the frame after it, except after the video's
    ``last_frame`` (when given). Greedy, so not minimal, but one pass and predictable.
    """
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    frames = np.asarray(track.frames, dtype=np.int64).reshape(-1)
    boxes = np.asarray(track.boxes, dtype=np.float64).reshape(-1, 4)
    if len(frames) == 0:
        return []
    if len(boxes) != len(frames):
        raise ValueError(f"track {track.track_id}: {len(frames)} frames but {len(boxes)} boxes")
    if np.any(np.diff(frames) <= 0):
        raise ValueError(f"track {track.track_id}: frames are not strictly increasing")
    if last_frame is not None and frames[-1] > last_frame:
        raise ValueError(
            f"track {track.track_id}: frame {int(frames[-1])} is past the last frame {last_frame}"
        )

    keyframes: list[Keyframe] = []
    for first, last in _runs(frames):
        kept = [first]
        while kept[-1] < last:
            kept.append(_segment_end(frames, boxes, kept[-1], last, min_iou))
        keyframes.extend(Keyframe(int(frames[i]), _as_box(boxes[i]), outside=False) for i in kept)
        after = int(frames[last]) + 1
        if last_frame is None or after <= last_frame:
            keyframes.append(Keyframe(after, _as_box(boxes[last]), outside=True))
    return keyframes


def interpolate(
    keyframes: Sequence[Keyframe], frames: np.ndarray | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and visibility CVAT shows at ``frames`` for a track stored as ``keyframes``.

    A frame takes the latest keyframe at or before it: hidden if that one is outside (or
    there is none), else interpolated towards the next keyframe, or held after the last.
    Hidden frames get NaN boxes. Returns ``(boxes (N, 4), visible (N,))``.
    """
    query = np.asarray(frames, dtype=np.int64).reshape(-1)
    kf_frames = np.array([k.frame for k in keyframes], dtype=np.int64)
    kf_boxes = np.array([k.box for k in keyframes], dtype=np.float64).reshape(-1, 4)
    kf_outside = np.array([k.outside for k in keyframes], dtype=bool)
    if np.any(np.diff(kf_frames) <= 0):
        raise ValueError("keyframes must be in strictly increasing frame order")

    boxes = np.full((len(query), 4), np.nan)
    if len(kf_frames) == 0:
        return boxes, np.zeros(len(query), dtype=bool)
    prev = np.searchsorted(kf_frames, query, side="right") - 1
    safe_prev = prev.clip(0)
    visible = (prev >= 0) & ~kf_outside[safe_prev]

    has_next = visible & (prev + 1 < len(kf_frames))
    held = visible & ~has_next
    boxes[held] = kf_boxes[safe_prev[held]]
    p, n = safe_prev[has_next], safe_prev[has_next] + 1
    boxes[has_next] = _lerp(kf_boxes[p], kf_boxes[n], kf_frames[p], kf_frames[n], query[has_next])
    return boxes, visible


def keyframe_stats(
    tracks: Sequence[Track],
    keyframes: Sequence[Sequence[Keyframe]] | None = None,
    *,
    min_iou: float = DEFAULT_KEYFRAME_IOU,
    last_frame: int | None = None,
) -> KeyframeStats:
    """Keyframe counts for ``tracks``; pass their ``keyframes`` (one list each) to skip thinning."""
    if keyframes is None:
        keyframes = [thin_keyframes(t, min_iou, last_frame) for t in tracks]
    if len(keyframes) != len(tracks):
        raise ValueError(f"{len(tracks)} tracks but {len(keyframes)} keyframe lists")
    outside = sum(k.outside for kfs in keyframes for k in kfs)
    total = sum(len(kfs) for kfs in keyframes)
    return KeyframeStats(
        tracks=len(tracks),
        tracked_frames=sum(len(t.frames) for t in tracks),
        keyframes=total - outside,
        outside_keyframes=outside,
    )
