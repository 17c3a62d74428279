"""Offline temporal smoothing of whole tracks before they become CVAT keyframes.

Detector boxes jitter by a few pixels from frame to frame; an online tracker can only filter
forwards, but annotation sees the whole video, so each coordinate can be averaged over its
neighbours on both sides (a Gaussian of ``sigma`` frames). That removes jitter without the
Kalman filter's lag, and CVAT then needs far fewer keyframes to follow the track.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.ndimage import gaussian_filter1d

from autotrack.tracks import Track

DEFAULT_SMOOTHING_SIGMA = 1.0  # frames


def smooth_track(track: Track, sigma: float = DEFAULT_SMOOTHING_SIGMA) -> Track:
    """The track with each run of consecutive frames smoothed on its own (never across a
    gap, where the object was lost); sigma 0 returns the track unchanged."""
    if sigma < 0:
        raise ValueError(f"sigma must not be negative, got {sigma}")
    if sigma == 0 or len(track.frames) < 3:
        return track
    boxes = track.boxes.copy()
    breaks = np.flatnonzero(np.diff(track.frames) > 1) + 1
    for run in np.split(np.arange(len(track.frames)), breaks):
        if len(run) >= 3:
            boxes[run] = gaussian_filter1d(track.boxes[run], sigma, axis=0, mode="nearest")
    return replace(track, boxes=boxes)
