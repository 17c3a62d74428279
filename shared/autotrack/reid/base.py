"""What every appearance embedder offers a tracker, and the cropping they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from autotrack.detectors.base import check_frame


@runtime_checkable
class Embedder(Protocol):
    """Appearance features of boxes in a frame, for nearest-neighbour (cosine) matching.

    ``embed`` crops every box of one frame and runs the model once on the whole batch.
    Rows are L2-normalised float32, so a dot product is a cosine similarity; a box with no
    pixels inside the frame (degenerate, non-finite or outside) gets an all-zero row, which
    is at cosine distance 1 from everything.
    """

    name: str  # identifies the model, so state from one embedder is never matched with another
    dim: int  # length of each embedding
    input_hw: tuple[int, int]  # crop size the model takes (height, width)

    def embed(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, dim) float32 embeddings of N xyxy pixel boxes of one HxWx3 uint8 BGR frame."""
        ...


def check_boxes(boxes: object) -> np.ndarray:
    """Boxes as an (N, 4) float64 array, or ValueError."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {array.shape}")
    return array


def pixel_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel bounds (N, 4) of each box clipped to the frame, and which are non-empty.

    A box covers the pixels it touches (floor of the start, ceil of the end), so a box of
    sub-pixel size inside the frame still yields one pixel.
    """
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    x1 = np.floor(safe[:, 0]).clip(0, width)
    y1 = np.floor(safe[:, 1]).clip(0, height)
    x2 = np.ceil(safe[:, 2]).clip(0, width)
    y2 = np.ceil(safe[:, 3]).clip(0, height)
    bounds = np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)
    # A box with x2 <= x1 is degenerate even where floor and ceil would give it a pixel.
    ordered = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    valid = finite & ordered & (bounds[:, 2] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 1])
    return bounds, valid


def crop_batch(frame_bgr: np.ndarray, boxes: object, input_hw: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Crops of every valid box resized to ``input_hw`` as (K, h, w, 3) uint8 BGR, and the
    (N,) mask of which boxes they are (the others are degenerate or outside the frame)."""
    frame = check_frame(frame_bgr)
    array = check_boxes(boxes)
    bounds, valid = pixel_boxes(array, frame.shape[1], frame.shape[0])
    h, w = input_hw
    crops = np.empty((int(valid.sum()), h, w, 3), dtype=np.uint8)
    for out, (x1, y1, x2, y2) in zip(crops, bounds[valid].tolist()):
        cv2.resize(frame[y1:y2, x1:x2], (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    return crops, valid


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32; all-zero rows stay zero."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", features, features, dtype=np.float64))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (features * scale[:, None]).astype(np.float32)


def scatter_rows(valid: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
    """(N, dim) float32 with ``rows`` at the valid positions and zeros elsewhere."""
    out = np.zeros((len(valid), dim), dtype=np.float32)
    out[valid] = rows
    return out


class CropEmbedder:
    """Shared half of the embedders: crop the boxes once, run the model in chunks of
    ``max_batch`` crops, L2-normalise, and give invalid boxes a zero row. Subclasses set
    ``input_hw``, ``dim`` and ``max_batch`` and implement ``_run`` (raw features of crops)."""

    input_hw: tuple[int, int]
    dim: int
    max_batch: int

    def _run(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """(K, dim) L2-normalised embeddings of crops already resized to ``input_hw``."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self.max_batch
        parts = [self._run(crops[i:i + step]) for i in range(0, len(crops), step)]
        return l2_normalize(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def embed(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, valid = crop_batch(frame_bgr, boxes, self.input_hw)
        return scatter_rows(valid, self.embed_crops(crops), self.dim)
