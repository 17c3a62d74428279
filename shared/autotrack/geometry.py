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
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)))
    ax1, ay1, ax2, ay2 = boxes_a.T
    bx1, by1, bx2, by2 = boxes_b.T
    inter = np.minimum.outer(ax2, bx2)
    inter -= np.maximum.outer(ax1, bx1)
    height = np.minimum.outer(ay2, by2)
    height -= np.maximum.outer(ay1, by1)
    np.maximum(inter, 0.0, out=inter)
    np.maximum(height, 0.0, out=height)
    inter *= height  # an inverted box has no intersection, so its IoU is 0 whatever its "area"
    union = np.add.outer((ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1))
    union -= inter
    np.maximum(union, 1e-12, out=union)  # empty unions have empty intersections: 0, not NaN
    inter /= union
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
    """xyxy to the Kalman filter's (cx, cy, a, h); a = w / h (hot path: no stacking)."""
    size = boxes[:, 2:4] - boxes[:, 0:2]
    out = np.empty((len(boxes), 4))
    np.multiply(size, 0.5, out=out[:, :2])
    out[:, :2] += boxes[:, 0:2]
    np.divide(size[:, 0], size[:, 1], out=out[:, 2])
    out[:, 3] = size[:, 1]
    return out


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
