"""Single-object tracking metrics as OTB and LaSOT report them (one-pass evaluation, OPE).

Per frame, the predicted box is compared with the ground-truth box by

* overlap: IoU of the two boxes (continuous coordinates, x2 = x + w, no "+1" pixel);
* centre error: Euclidean distance in pixels between the box centres;
* normalised centre error (LaSOT, TrackingNet): the centre offset divided by the ground-truth
  width and height per axis, then its Euclidean norm.

Curves and scores, with the thresholds of the OTB toolkit, pysot and pytracking:

* success curve: fraction of frames with IoU *strictly above* each of 21 thresholds
  0, 0.05, ..., 1; ``success_auc`` is its mean (the "AUC" / "success score"). Because the
  comparison is strict, a perfect track scores 20/21 = 0.952, as in those toolkits;
* precision curve: fraction of frames with centre error <= 0, 1, ..., 50 px; ``precision`` is
  its value at 20 px;
* normalised precision curve: fraction with normalised error <= 0, 0.01, ..., 0.5;
  ``normalized_precision`` is its value at 0.2 (as pysot and pytracking print it).

Frames without ground truth (any NaN coordinate, or width/height <= 0: an absent or occluded
target) are skipped: they count neither as hits nor in the number of frames. (The OTB MATLAB
toolkit and pysot keep them in the denominator, scoring them as overlap failures but as
precision hits; skipping is LaSOT's intent and does not depend on that quirk.) A frame with
ground truth but no prediction (NaN row: the tracker reported the target lost) is a failure:
IoU 0 and an infinite centre error.

Boxes are (N, 4) arrays, ``x1 y1 x2 y2`` by default (autotrack's convention) or ``x y w h``
(OTB/LaSOT text files) with ``box_format="xywh"``. :func:`combine_sot` averages per-sequence
curves, each sequence weighing the same, as the benchmarks do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotrack.errors import InputError

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # pixels
NORM_PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
PRECISION_AT = 20.0  # pixels
NORM_PRECISION_AT = 0.2
BOX_FORMATS = ("xyxy", "xywh")


@dataclass(frozen=True)
class SotResult:
    """Scores and curves of one sequence (or the mean over sequences, see combine_sot)."""

    frames: int  # frames with ground truth (summed over sequences when combined)
    success_auc: float
    precision: float
    normalized_precision: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    normalized_precision_curve: np.ndarray
    sequences: int = 1

    def as_dict(self, curves: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "frames": self.frames, "sequences": self.sequences,
            "success_auc": self.success_auc, "precision": self.precision,
            "normalized_precision": self.normalized_precision,
        }
        if curves:
            out["success_curve"] = self.success_curve.tolist()
            out["precision_curve"] = self.precision_curve.tolist()
            out["normalized_precision_curve"] = self.normalized_precision_curve.tolist()
        return out


def as_xyxy(boxes: object, box_format: str = "xyxy", what: str = "boxes") -> np.ndarray:
    """(N, 4) float64 x1 y1 x2 y2; NaN rows stay NaN. Empty input gives shape (0, 4)."""
    if box_format not in BOX_FORMATS:
        raise InputError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"{what} must be an (N, 4) array, got shape {array.shape}")
    if np.isinf(array).any():
        raise InputError(f"{what} hold infinite coordinates")
    if box_format == "xywh":
        array = np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)
    return array


def valid_gt(gt_xyxy: np.ndarray) -> np.ndarray:
    """Frames whose ground truth is a box: no NaN and positive width and height."""
    finite = np.isfinite(gt_xyxy).all(axis=1)
    with np.errstate(invalid="ignore"):
        sized = (gt_xyxy[:, 2] > gt_xyxy[:, 0]) & (gt_xyxy[:, 3] > gt_xyxy[:, 1])
    return finite & sized


def frame_errors(pred: object, gt: object, box_format: str = "xyxy"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU, centre error and normalised centre error on the frames with ground truth."""
    p = as_xyxy(pred, box_format, "predicted boxes")
    g = as_xyxy(gt, box_format, "ground-truth boxes")
    if len(p) != len(g):
        raise InputError(f"{len(p)} predicted boxes for {len(g)} ground-truth frames")
    keep = valid_gt(g)
    p, g = p[keep], g[keep]
    missing = ~np.isfinite(p).all(axis=1)
    p = np.where(missing[:, None], 0.0, p)
    iw = np.clip(np.minimum(p[:, 2], g[:, 2]) - np.maximum(p[:, 0], g[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(p[:, 3], g[:, 3]) - np.maximum(p[:, 1], g[:, 1]), 0.0, None)
    inter = iw * ih
    area_p = np.clip(p[:, 2] - p[:, 0], 0.0, None) * np.clip(p[:, 3] - p[:, 1], 0.0, None)
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_p + area_g - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    offset = (p[:, :2] + p[:, 2:]) / 2.0 - (g[:, :2] + g[:, 2:]) / 2.0
    centre = np.hypot(offset[:, 0], offset[:, 1])
    size = g[:, 2:] - g[:, :2]
    normalized = np.hypot(offset[:, 0] / size[:, 0], offset[:, 1] / size[:, 1])
    iou[missing] = 0.0
    centre[missing] = np.inf
    normalized[missing] = np.inf
    return iou, centre, normalized


def _rate(values: np.ndarray, thresholds: np.ndarray, above: bool) -> np.ndarray:
    if len(values) == 0:
        return np.full(len(thresholds), np.nan)
    hits = values[:, None] > thresholds[None] if above else values[:, None] <= thresholds[None]
    return hits.mean(axis=0)


def success_curve(pred: object, gt: object, box_format: str = "xyxy") -> np.ndarray:
    """Fraction of frames with IoU > t for t in SUCCESS_THRESHOLDS (NaN with no frames)."""
    return _rate(frame_errors(pred, gt, box_format)[0], SUCCESS_THRESHOLDS, above=True)


def success_auc(pred: object, gt: object, box_format: str = "xyxy") -> float:
    return float(np.mean(success_curve(pred, gt, box_format)))


def precision_curve(pred: object, gt: object, box_format: str = "xyxy") -> np.ndarray:
    """Fraction of frames with centre error <= t px for t in 0..50."""
    return _rate(frame_errors(pred, gt, box_format)[1], PRECISION_THRESHOLDS, above=False)


def precision(pred: object, gt: object, threshold: float = PRECISION_AT,
              box_format: str = "xyxy") -> float:
    """Fraction of frames whose centre error is <= ``threshold`` pixels (20 by default)."""
    return float(_rate(frame_errors(pred, gt, box_format)[1], np.array([float(threshold)]),
                       above=False)[0])


def normalized_precision(pred: object, gt: object, threshold: float = NORM_PRECISION_AT,
                         box_format: str = "xyxy") -> float:
    """Fraction of frames whose size-normalised centre error is <= ``threshold`` (0.2)."""
    return float(_rate(frame_errors(pred, gt, box_format)[2], np.array([float(threshold)]),
                       above=False)[0])


def evaluate_sot(pred: object, gt: object, box_format: str = "xyxy") -> SotResult:
    """All scores and curves of one sequence; NaN scores when it has no ground-truth frame."""
    iou, centre, normalized = frame_errors(pred, gt, box_format)
    success = _rate(iou, SUCCESS_THRESHOLDS, above=True)
    prec = _rate(centre, PRECISION_THRESHOLDS, above=False)
    norm = _rate(normalized, NORM_PRECISION_THRESHOLDS, above=False)
    return SotResult(
        frames=int(len(iou)),
        success_auc=float(np.mean(success)),
        precision=float(prec[_index(PRECISION_THRESHOLDS, PRECISION_AT)]),
        normalized_precision=float(norm[_index(NORM_PRECISION_THRESHOLDS, NORM_PRECISION_AT)]),
        success_curve=success,
        precision_curve=prec,
        normalized_precision_curve=norm,
    )


def combine_sot(results: Sequence[SotResult]) -> SotResult:
    """Mean curves over sequences with at least one ground-truth frame (each weighs the same)."""
    scored = [r for r in results if r.frames > 0]
    if not scored:
        return evaluate_sot(np.zeros((0, 4)), np.zeros((0, 4)))
    success = np.mean([r.success_curve for r in scored], axis=0)
    prec = np.mean([r.precision_curve for r in scored], axis=0)
    norm = np.mean([r.normalized_precision_curve for r in scored], axis=0)
    return SotResult(
        frames=sum(r.frames for r in scored),
        success_auc=float(np.mean(success)),
        precision=float(prec[_index(PRECISION_THRESHOLDS, PRECISION_AT)]),
        normalized_precision=float(norm[_index(NORM_PRECISION_THRESHOLDS, NORM_PRECISION_AT)]),
        success_curve=success,
        precision_curve=prec,
        normalized_precision_curve=norm,
        sequences=len(scored),
    )


def _index(thresholds: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(thresholds - value)))
