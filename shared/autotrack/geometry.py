"""Axis-aligned boxes as float arrays: IoU, clipping and format conversions.

Canonical format is xyxy (x1, y1, x2, y2) in pixels. The Kalman filter works in xyah
(centre x, centre y, aspect w/h, height), the representation ByteTrack and DeepSORT use.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy float arrays, shape (N, M).

    Degenerate boxes give 0, never NaN. Called several times per tracked frame, so it
    takes arrays as they are and uses ufuncs only (no copies, no ``clip``).
    """
    a, b = boxes_a, boxes_b
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    inter /= np.maximum(union, 1e-12)  # empty unions have empty intersections: 0, not NaN
    return inter


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of a[i] with b[i], shape (N,)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the image [0, width] x [0, height]."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return np.stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """Kalman state (cx, cy, a, h) to xyxy; takes an (N, >=4) array as is (hot path)."""
    centre = xyah[:, :2]
    half = np.empty((len(xyah), 2))
    half[:, 1] = xyah[:, 3] * 0.5
    half[:, 0] = xyah[:, 2] * half[:, 1]
    return np.concatenate([centre - half, centre + half], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """xyxy to top-left x, y, width, height (MOTChallenge's tlwh)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
