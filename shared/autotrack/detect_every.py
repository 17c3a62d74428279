"""``--detect-every K``: detect every K-th frame only, and give the frames between boxes.

The detector runs on frames 0, K, 2K, ...; on the frames between, ByteTrack only moves its
predictions on (:meth:`ByteTrack.advance`), so its motion model, gates and buffer keep their
per-frame meaning. DeepSORT cannot skip a frame (a tentative track dies at its first frame
without a match), so it is built for ``fps / K`` and sees the detected frames only.

Each skipped frame then takes its box from the two detected frames around it: on the line
between them where the track holds both, else the box of the one it holds (where a track
starts, ends, or missed a detected frame). A detected frame where the track was not seen
stays a gap, as it would with every frame detected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from autotrack.tracks import Track


def detected_frame(every: int) -> Callable[[int], bool]:
    """Whether a frame index is one the detector runs on."""
    return lambda index: index % every == 0


def tracker_frame_rate(fps: float, every: int, tracker_name: str) -> float:
    """The frame rate to build the tracker for (see the module docstring)."""
    return fps / every if tracker_name == "deepsort" else fps


def bridge(tracks: list[Track], every: int, frame_count: int) -> list[Track]:
    """Tracks seen on detected frames only, with the skipped frames around them filled."""
    if every == 1:
        return list(tracks)
    return [_bridge(track, every, frame_count) for track in tracks]


def _bridge(track: Track, every: int, frame_count: int) -> Track:
    frames, boxes = track.frames, np.asarray(track.boxes, dtype=np.float64)
    start = max(0, track.first_frame - every + 1)
    candidates = np.arange(start, min(frame_count, track.last_frame + every), dtype=np.int64)
    skipped = candidates[(candidates % every != 0) & ~np.isin(candidates, frames)]
    before = skipped // every * every
    after = before + every
    at_before = np.searchsorted(frames, before).clip(max=len(frames) - 1)
    at_after = np.searchsorted(frames, after).clip(max=len(frames) - 1)
    has_before = frames[at_before] == before
    has_after = frames[at_after] == after
    keep = has_before | has_after
    weight = np.where(has_before & has_after, (skipped - before) / every,
                      np.where(has_after, 1.0, 0.0))[keep, None]
    filled = boxes[at_before[keep]] * (1 - weight) + boxes[at_after[keep]] * weight
    all_frames = np.concatenate([frames, skipped[keep]])
    order = np.argsort(all_frames, kind="stable")
    scores = np.concatenate([track.scores, np.zeros(int(keep.sum()))])
    return replace(track, frames=all_frames[order],
                   boxes=np.concatenate([boxes, filled])[order], scores=scores[order])
