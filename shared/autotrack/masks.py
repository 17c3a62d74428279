"""Instance masks: CVAT's run-length encoding and polygons, from boolean bitmaps.

CVAT stores a mask shape as run lengths over its bounding box, alternating background and
foreground (starting with background), followed by the box's inclusive corners
[x1, y1, x2, y2]. Polygons are flat [x1, y1, x2, y2, ...] lists in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive bounding box (x1, y1, x2, y2) of the foreground, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def encode_cvat_mask(mask: np.ndarray) -> list[int] | None:
    """CVAT's RLE of a (H, W) bool mask over its own box; None for an empty mask."""
    box = mask_box(mask)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    flat = mask[y1:y2 + 1, x1:x2 + 1].ravel()
    # Boundaries where the value flips, plus both ends; runs start with background.
    flips = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], flips, [len(flat)]])
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs = [0, *runs]
    return [*runs, x1, y1, x2, y2]


def decode_cvat_mask(encoded: Sequence[float], height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of CVAT's RLE (the inverse of :func:`encode_cvat_mask`)."""
    *runs, x1, y1, x2, y2 = (int(v) for v in encoded)
    if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
        raise ValueError("mask box lies outside the image")
    box_h, box_w = y2 - y1 + 1, x2 - x1 + 1
    if sum(runs) != box_h * box_w or any(r < 0 for r in runs):
        raise ValueError("mask run lengths do not cover its box")
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2 + 1, x1:x2 + 1] = flat.reshape(box_h, box_w)
    return mask


def mask_to_polygon(mask: np.ndarray, tolerance: float = 1.0) -> list[float] | None:
    """Outline of the largest connected part as a flat polygon, simplified to ``tolerance``
    pixels; None when there is no part with at least three corners."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    polygon = cv2.approxPolyDP(largest, tolerance, True).reshape(-1, 2)
    if len(polygon) < 3:
        return None
    return polygon.astype(float).ravel().tolist()


def polygons_to_masks(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool masks filled from N polygons of (K, 2) pixel points."""
    masks = np.zeros((len(polygons), *shape), dtype=np.uint8)
    for mask, polygon in zip(masks, polygons):
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(points) >= 3:
            cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return masks.astype(bool)
