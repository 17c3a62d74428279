"""MOTChallenge text files: every tracked frame, unthinned, for evaluation with MOT tools.

Each line is ``frame,id,x,y,w,h,conf,-1,-1,-1`` with 1-based frames and top-left/size
boxes. The reader also takes ground-truth files (9 columns: ``...,conf,class,visibility``)
and anything from 6 to 10 columns.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from autotrack.geometry import xywh_to_xyxy, xyxy_to_xywh
from autotrack.tracks import Track

_FORMAT = ("%d", "%d", "%.2f", "%.2f", "%.2f", "%.2f", "%.4f", "%d", "%d", "%d")


class MotTrack(NamedTuple):
    """One id read from a MOT file: 0-based frames, xyxy boxes, confidences (1 if absent)."""

    frames: np.ndarray  # (K,) int64, strictly increasing
    boxes: np.ndarray  # (K, 4) float64 xyxy
    scores: np.ndarray  # (K,) float64


def mot_rows(tracks: Sequence[Track]) -> np.ndarray:
    """The (N, 10) table of all tracked frames, sorted by frame then id."""
    parts = [
        np.column_stack([
            t.frames + 1, np.full(len(t.frames), t.track_id), xyxy_to_xywh(t.boxes), t.scores,
            np.full((len(t.frames), 3), -1),
        ])
        for t in tracks if len(t.frames)
    ]
    if not parts:
        return np.zeros((0, 10))
    rows = np.concatenate(parts).astype(np.float64) + 0.0  # + 0.0 avoids printing -0.00
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def write_mot(path: str | os.PathLike[str], tracks: Sequence[Track]) -> None:
    """Write ``tracks`` as a MOTChallenge results file (track ids kept as they are)."""
    np.savetxt(path, mot_rows(tracks), fmt=_FORMAT, delimiter=",")


def read_mot(path: str | os.PathLike[str]) -> dict[int, MotTrack]:
    """Tracks by id from a MOT results or ground-truth file; frames come back 0-based."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file
        table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if table.size == 0:
        return {}
    if not 6 <= table.shape[1] <= 10:
        raise ValueError(f"{path}: MOT lines need 6 to 10 columns, found {table.shape[1]}")
    frames = table[:, 0].astype(np.int64) - 1
    ids = table[:, 1].astype(np.int64)
    scores = table[:, 6] if table.shape[1] > 6 else np.ones(len(table))
    boxes = xywh_to_xyxy(table[:, 2:6])

    order = np.lexsort((frames, ids))
    frames, ids, scores, boxes = frames[order], ids[order], scores[order], boxes[order]
    same = (np.diff(ids) == 0) & (np.diff(frames) == 0)
    if same.any():
        i = int(np.argmax(same))
        raise ValueError(f"{path}: id {ids[i]} appears twice on frame {frames[i] + 1}")
    starts = np.flatnonzero(np.r_[True, np.diff(ids) != 0])
    stops = np.r_[starts[1:], len(ids)]
    return {
        int(ids[a]): MotTrack(frames[a:b].copy(), boxes[a:b].copy(), scores[a:b].copy())
        for a, b in zip(starts, stops)
    }
