"""Tracking metrics computed by TrackEval's own metric classes; this module only converts.

Per sequence, ground truth and predictions become the ``data`` dict TrackEval's metrics
take (what its MOTChallenge dataset's ``get_preprocessed_seq_data`` builds): ids relabelled
0..n-1 in sorted order of the originals, and per frame the IoU of every ground-truth box
with every predicted box, computed by TrackEval's ``_calculate_box_ious``. Then:

* ``HOTA`` (TrackEval ``HOTA``): HOTA, DetA, AssA, LocA (and DetRe/DetPr/AssRe/AssPr),
  each the mean over its 19 IoU thresholds 0.05..0.95, as TrackEval reports them;
* ``CLEAR`` (MOTA, MOTP, TP, FP, FN, IDSW, Frag, MT/PT/ML) and ``Identity`` (IDF1, IDP,
  IDR) at IoU >= ``threshold`` (default 0.5);
* ``JAndF`` (TrackEval's J&F, adapted from the DAVIS 2017 evaluation) where both sides
  have masks: region similarity J (mask IoU) and boundary F (precision/recall of boundary
  pixels matched within ceil(0.008 x image diagonal) pixels), each averaged over all frames
  of the sequence for every ground-truth object, after matching predicted objects one to
  one to ground-truth objects by mean J (Hungarian). As in DAVIS, a frame where neither the
  object nor its match has a mask scores J = F = 1, and unmatched objects score 0.

Sequences combine with each metric's ``combine_sequences`` (HOTA, CLEAR and Identity from
summed counts; J&F weighted by ground-truth objects).

Conventions (how the reference numbers are reproduced): a match needs IoU >= 0.5, which is
TrackEval's CLEAR/Identity threshold and py-motmetrics' ``eval_motchallenge``
(``iou_matrix(..., max_iou=0.5)``: distance 1 - IoU <= 0.5). IoU uses boxes as written
(x2 = x + w, no "+1" pixel convention), as both do. MOT ground-truth rows are selected per
the MOTChallenge convention (see :mod:`autotrack.evaluate.sequences`); under MOT16/17/20 a
prediction matched (Hungarian, IoU >= 0.5, TrackEval's fixed value) to a distractor-class
ground-truth row is removed first, as TrackEval does. On TUD-Campus and TUD-Stadtmitte this
gives the numbers the MOTChallenge devkit and py-motmetrics print (MOTA 52.6 / 56.4 %,
IDF1 55.8 / 64.5 %, identical FP, FN and IDSW counts).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from autotrack.errors import AutotrackError, InputError
from autotrack.evaluate.sequences import SequenceData

DEFAULT_THRESHOLD = 0.5
DISTRACTOR_IOU = 0.5  # TrackEval's MOTChallenge preprocessing uses 0.5 whatever the metric's

# Reported name -> (TrackEval metric, field). HOTA fields are arrays over 19 thresholds.
_HOTA_FIELDS = {"HOTA": "HOTA", "DetA": "DetA", "AssA": "AssA", "LocA": "LocA",
                "DetRe": "DetRe", "DetPr": "DetPr", "AssRe": "AssRe", "AssPr": "AssPr"}
_CLEAR_FIELDS = {"MOTA": "MOTA", "MOTP": "MOTP", "TP": "CLR_TP", "FP": "CLR_FP",
                 "FN": "CLR_FN", "IDSW": "IDSW", "Frag": "Frag", "MT": "MT", "PT": "PT",
                 "ML": "ML", "Recall": "CLR_Re", "Precision": "CLR_Pr"}
_IDENTITY_FIELDS = {"IDF1": "IDF1", "IDP": "IDP", "IDR": "IDR", "IDTP": "IDTP",
                    "IDFP": "IDFP", "IDFN": "IDFN"}
_JF_FIELDS = {"J&F": "J&F", "J": "J-Mean", "F": "F-Mean", "J-Recall": "J-Recall",
              "F-Recall": "F-Recall"}
COUNT_FIELDS = frozenset({"TP", "FP", "FN", "IDSW", "Frag", "MT", "PT", "ML", "IDTP", "IDFP",
                          "IDFN"})
BOX_METRICS = (*_HOTA_FIELDS, *_CLEAR_FIELDS, *_IDENTITY_FIELDS)
MASK_METRICS = tuple(_JF_FIELDS)


def _trackeval():
    try:
        import trackeval
    except ImportError:
        raise AutotrackError(
            "evaluation needs trackeval: pip install 'cvat-autotrack[eval]'") from None
    return trackeval


@dataclass(frozen=True)
class SequenceResult:
    """One sequence's scores: ``metrics`` maps names in :data:`BOX_METRICS` (and
    :data:`MASK_METRICS` when both sides have masks) to fractions, counts as integers."""

    name: str
    frames: int
    gt_objects: int
    gt_boxes: int
    pred_objects: int
    pred_boxes: int
    metrics: dict[str, float]
    raw: dict[str, dict] = field(repr=False, default_factory=dict)  # TrackEval's results


@dataclass(frozen=True)
class EvaluationReport:
    sequences: list[SequenceResult]
    combined: dict[str, float]
    threshold: float

    def as_dict(self) -> dict:
        """Plain JSON-ready data: fractions (0..1) and integer counts."""
        return {
            "threshold": self.threshold,
            "sequences": {
                s.name: {"frames": s.frames, "gt_objects": s.gt_objects, "gt_boxes": s.gt_boxes,
                         "pred_objects": s.pred_objects, "pred_boxes": s.pred_boxes,
                         "metrics": s.metrics}
                for s in self.sequences
            },
            "combined": self.combined,
        }


# ------------------------------------------------------------------------ conversion
def _relabel(ids: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Ids relabelled 0..n-1 in sorted order of the originals, and n."""
    unique = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *ids]))
    return [np.searchsorted(unique, i).astype(int) for i in ids], len(unique)


def _aligned(gt: SequenceData, pred: SequenceData) -> tuple[SequenceData, SequenceData]:
    if gt.image_size and pred.image_size and gt.image_size != pred.image_size:
        raise InputError(
            f"{gt.name}: ground truth is {gt.image_size[1]}x{gt.image_size[0]} but the "
            f"prediction is {pred.image_size[1]}x{pred.image_size[0]}")
    for this, other, role in ((gt, pred, "prediction"), (pred, gt, "ground truth")):
        if this.declared_frames is not None and other.last_object_frame >= this.declared_frames:
            raise InputError(
                f"{gt.name}: the {role} has objects on frame {other.last_object_frame} (0-based) "
                f"but {this.source or 'the other file'} declares {this.declared_frames} frames")
    frames = max(gt.num_frames, pred.num_frames)
    return gt.padded(frames), pred.padded(frames)


def _distractor_matches(
    box_iou, gt_boxes: np.ndarray, ignored: np.ndarray, distractor: np.ndarray,
    pred_boxes: np.ndarray,
) -> np.ndarray:
    """Indices of predictions that TrackEval's MOT16/17/20 preprocessing removes: those the
    Hungarian match of all ground-truth rows (IoU >= 0.5) pairs with a distractor row."""
    if not distractor.any() or not len(pred_boxes):
        return np.zeros(0, dtype=int)
    from scipy.optimize import linear_sum_assignment

    rows = np.concatenate([gt_boxes, ignored])
    scores = box_iou(rows, pred_boxes, box_format="x0y0x1y1")
    scores[scores < DISTRACTOR_IOU - np.finfo("float").eps] = 0
    match_rows, match_cols = linear_sum_assignment(-scores)
    matched = scores[match_rows, match_cols] > 0 + np.finfo("float").eps
    is_distractor = np.concatenate([np.zeros(len(gt_boxes), dtype=bool), distractor])
    return match_cols[matched & is_distractor[match_rows]]


def trackeval_box_data(gt: SequenceData, pred: SequenceData) -> dict:
    """The per-sequence ``data`` dict for TrackEval's HOTA, CLEAR and Identity."""
    box_iou = _trackeval().datasets._base_dataset._BaseDataset._calculate_box_ious
    gt, pred = _aligned(gt, pred)
    pred_ids, pred_boxes = [], []
    for t in range(gt.num_frames):
        remove = _distractor_matches(box_iou, gt.boxes[t], gt.ignored_boxes[t],
                                     gt.ignored_distractor[t], pred.boxes[t])
        pred_ids.append(np.delete(pred.ids[t], remove))
        pred_boxes.append(np.delete(pred.boxes[t], remove, axis=0))
    similarity = [box_iou(g, p, box_format="x0y0x1y1") for g, p in zip(gt.boxes, pred_boxes)]
    gt_ids, num_gt = _relabel(gt.ids)
    tracker_ids, num_tracker = _relabel(pred_ids)
    return {
        "num_timesteps": gt.num_frames,
        "num_gt_ids": num_gt,
        "num_tracker_ids": num_tracker,
        "num_gt_dets": sum(len(i) for i in gt_ids),
        "num_tracker_dets": sum(len(i) for i in tracker_ids),
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "similarity_scores": similarity,
        "seq": gt.name,
    }


def _mask_objects(seq: SequenceData):
    """Per frame, the (ids, masks) of objects that have a mask."""
    out = []
    for t in range(seq.num_frames):
        frame = seq.masks[t] if seq.masks is not None else ()
        keep = [k for k, m in enumerate(frame) if m is not None]
        out.append((seq.ids[t][keep], [frame[k] for k in keep]))
    return out


def trackeval_mask_data(gt: SequenceData, pred: SequenceData) -> dict | None:
    """The ``data`` dict for TrackEval's J&F (masks as pycocotools RLE), or None when the
    ground truth has no masks or the prediction has objects but none with a mask (boxes
    only). An empty prediction is scored (J&F near 0)."""
    if not gt.has_masks or (pred.num_boxes and not pred.has_masks):
        return None
    gt, pred = _aligned(gt, pred)
    size = gt.image_size or pred.image_size
    if size is None:
        raise InputError(f"{gt.name}: masks need the image size (CVAT XML <original_size>)")
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise AutotrackError("J&F needs pycocotools: pip install 'cvat-autotrack[eval]'") from None
    height, width = size

    def encode(objects):
        ids, masks = zip(*objects) if objects else ((), ())
        relabelled, count = _relabel(list(ids))
        dets = [[mask_utils.encode(np.asfortranarray(m.paste(height, width).astype(np.uint8)))
                 for m in frame] for frame in masks]
        return relabelled, count, dets

    gt_ids, num_gt, gt_dets = encode(_mask_objects(gt))
    tracker_ids, num_tracker, tracker_dets = encode(_mask_objects(pred))
    if num_gt == 0:
        return None
    return {
        "num_timesteps": gt.num_frames,
        "num_gt_ids": num_gt,
        "num_tracker_ids": num_tracker,
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "gt_dets": gt_dets,
        "tracker_dets": tracker_dets,
        "seq": gt.name,
    }


# ---------------------------------------------------------------------------- scoring
def _metric_objects(threshold: float) -> dict:
    te = _trackeval()
    quiet = {"THRESHOLD": threshold, "PRINT_CONFIG": False}
    return {"HOTA": te.metrics.HOTA(), "CLEAR": te.metrics.CLEAR(dict(quiet)),
            "Identity": te.metrics.Identity(dict(quiet))}


def _jandf():
    te = _trackeval()
    try:
        import skimage.morphology  # noqa: F401  (TrackEval's F measure imports its disk())
    except ImportError:
        raise AutotrackError("J&F needs scikit-image: pip install 'cvat-autotrack[eval]'") from None
    return te.metrics.JAndF()


def _summary(raw: dict[str, dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for family, fields in (("HOTA", _HOTA_FIELDS), ("CLEAR", _CLEAR_FIELDS),
                           ("Identity", _IDENTITY_FIELDS), ("JAndF", _JF_FIELDS)):
        if family not in raw:
            continue
        for name, key in fields.items():
            value = raw[family][key]
            value = float(np.mean(value))
            out[name] = int(round(value)) if name in COUNT_FIELDS else value
    return out


def _quietly(fn, *args):
    # TrackEval's J&F decay bins average empty slices on short or long sequences (decay is
    # not reported here), and pycocotools 2.0 warns under numpy 2 on every decode; keep
    # both out of the user's terminal.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args)


def evaluate_sequence(
    gt: SequenceData, pred: SequenceData, *, threshold: float = DEFAULT_THRESHOLD,
    name: str | None = None,
) -> SequenceResult:
    """Score ``pred`` against ``gt`` (one sequence)."""
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"IoU threshold must be in (0, 1], got {threshold}")
    data = trackeval_box_data(gt, pred)
    raw = {family: metric.eval_sequence(data)
           for family, metric in _metric_objects(threshold).items()}
    mask_data = trackeval_mask_data(gt, pred)
    if mask_data is not None:
        raw["JAndF"] = _quietly(_jandf().eval_sequence, mask_data)
    return SequenceResult(
        name=name or gt.name, frames=data["num_timesteps"], gt_objects=data["num_gt_ids"],
        gt_boxes=data["num_gt_dets"], pred_objects=data["num_tracker_ids"],
        pred_boxes=data["num_tracker_dets"], metrics=_summary(raw), raw=raw,
    )


def combine(results: Sequence[SequenceResult], threshold: float = DEFAULT_THRESHOLD
            ) -> dict[str, float]:
    """Scores over all ``results`` together, by TrackEval's ``combine_sequences``."""
    metrics = _metric_objects(threshold)
    raw = {family: metric.combine_sequences({r.name: r.raw[family] for r in results})
           for family, metric in metrics.items()}
    with_masks = {r.name: r.raw["JAndF"] for r in results if "JAndF" in r.raw}
    if with_masks:
        raw["JAndF"] = _quietly(_jandf().combine_sequences, with_masks)
    return _summary(raw)


def evaluate(
    pairs: Sequence[tuple[SequenceData, SequenceData]], *, threshold: float = DEFAULT_THRESHOLD,
) -> EvaluationReport:
    """Score each (ground truth, prediction) pair and all of them combined."""
    names = [gt.name for gt, _ in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"two ground-truth files are both named {duplicates[0]!r}")
    results = [evaluate_sequence(gt, pred, threshold=threshold) for gt, pred in pairs]
    return EvaluationReport(results, combine(results, threshold) if results else {}, threshold)
