"""The judging step: the base and the new model scored on the dataset's val split.

Both models run on the same val images (``manifest.json``'s frames of split ``val``; a
dataset exported with ``--val 0`` has none, so the train images are used and the report says
so) and are scored the same way, as ultralytics' validator scores detections: every box down
to score 0.001, matched most confident first to the reviewed boxes of the same class at IoU
0.50, 0.55, ... 0.95, average precision from the 101-point interpolated precision-recall
curve. mAP50 and mAP50-95 are means over the classes with val boxes.

The base model's classes are matched to the dataset's by name, ignoring case (a COCO base's
``person`` is a task's ``person``); dataset classes the base does not know get no base score,
and base classes the dataset does not have are left out. The verdict compares mAP50-95 over
the classes both models score: a new model below the base is "worse" and is not published
without ``--force``.

The report (``report.md``) holds both tables, the verdict and the training curves image
ultralytics drew (``results.png``, copied beside it as ``curves.png``); ``judge.json`` the
same numbers for machines.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotrack.errors import InputError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MIN_SCORE = 0.001  # as ultralytics' validator


# --- the val split ---------------------------------------------------------------------------

@dataclass
class ValSet:
    """The images a model is judged on and their reviewed boxes (xyxy pixels)."""

    folder: Path
    names: list[str]
    images: list[Path]
    classes: list[np.ndarray]  # per image, (N,) int
    boxes: list[np.ndarray]  # per image, (N, 4)
    split: str  # "val", or "train" when the dataset has no val split

    def box_counts(self) -> Counter:
        return Counter(self.names[int(c)] for cls in self.classes for c in cls)


def read_manifest(dataset: Path) -> dict[str, Any]:
    path = Path(dataset) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        names = manifest["names"]
        frames = manifest["frames"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{dataset} is not a dataset autotrack export wrote (no readable "
                         f"manifest.json: {' '.join(str(exc).split())})") from None
    if not isinstance(names, list) or not isinstance(frames, list):
        raise InputError(f"{path}: names and frames must be lists")
    return manifest


def load_val(dataset: Path) -> ValSet:
    """The val frames of a dataset (its train frames when it has no val split)."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    names = [str(n) for n in manifest["names"]]
    rows = [r for r in manifest["frames"] if r.get("split") == "val"]
    split = "val"
    if not rows:
        rows = [r for r in manifest["frames"] if r.get("split") == "train"]
        split = "train"
    if not rows:
        raise InputError(f"{dataset} holds no frames to judge a model on")
    images, classes, boxes = [], [], []
    for row in rows:
        image = dataset / row["image"]
        label = dataset / "labels" / Path(row["image"]).relative_to("images").with_suffix(".txt")
        width, height = int(row["width"]), int(row["height"])
        cls, xyxy = read_labels(label, width, height, len(names))
        images.append(image)
        classes.append(cls)
        boxes.append(xyxy)
    return ValSet(dataset, names, images, classes, boxes, split)


def read_labels(path: Path, width: int, height: int, classes: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file as class ids and xyxy pixel boxes; InputError when malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except (ValueError, IndexError):
            raise InputError(f"{path}:{number}: not a YOLO box line ({line.strip()[:40]!r})"
                             ) from None
        if not 0 <= cls < classes or len(parts) != 5:
            raise InputError(f"{path}:{number}: class {cls} is not one of the dataset's "
                             f"{classes} classes")
        rows.append((cls, (cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height))
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    array = np.array(rows, dtype=np.float64)
    return array[:, 0].astype(np.int64), array[:, 1:]


# --- scoring ---------------------------------------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(gt_classes: np.ndarray, gt_boxes: np.ndarray, classes: np.ndarray,
          boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """(P, 10) bool: detection p is a true positive at each IoU threshold, decided as
    ultralytics' validator (``match_predictions``) and COCO decide it: detections in falling
    score order (``scores``; index order without), each takes the box of its class it overlaps
    most among those no more confident detection took. Giving each box to its best-IoU
    detection instead turns confident detections into false positives: 0.12 mAP50 lower than
    the validator on the benchmark's val split."""
    hits = np.zeros((len(classes), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(classes) or not len(gt_classes):
        return hits
    iou = box_iou(gt_boxes, boxes) * (gt_classes[:, None] == classes[None, :])
    order = np.argsort(-scores, kind="stable") if scores is not None else range(len(classes))
    taken = np.zeros((len(gt_classes), len(IOU_THRESHOLDS)), dtype=bool)
    columns = np.arange(len(IOU_THRESHOLDS))
    for p in order:
        if iou[:, p].max() < IOU_THRESHOLDS[0]:
            continue
        free = np.where(taken, 0.0, iou[:, p, None])  # (boxes, thresholds)
        best = free.argmax(axis=0)
        hits[p] = free[best, columns] >= IOU_THRESHOLDS
        taken[best, columns] |= hits[p]
    return hits


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, interpolated at 101 recall points (COCO), with
    ultralytics' sentinels: precision drops to 0 right after the last recall reached."""
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has trapz only
    return float(trapezoid(np.interp(x, mrec, mpre), x))


def class_ap(hits: np.ndarray, scores: np.ndarray, positives: int) -> np.ndarray:
    """AP at each IoU threshold of one class's detections."""
    if positives == 0:
        return np.full(len(IOU_THRESHOLDS), np.nan)
    if not len(scores):
        return np.zeros(len(IOU_THRESHOLDS))
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order], axis=0)
    fp = np.cumsum(~hits[order], axis=0)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, 1e-9)
    return np.array([average_precision(recall[:, t], precision[:, t])
                     for t in range(len(IOU_THRESHOLDS))])


@dataclass
class Scores:
    """One model on the val split."""

    model: str
    matched: dict[str, str | None]  # dataset class -> the model's class of that name
    per_class: dict[str, dict[str, float]]  # dataset class -> {"mAP50", "mAP50-95"}
    images: int
    seconds: float
    boxes: dict[str, int] = field(default_factory=dict)  # val boxes per class

    def mean(self, classes: Sequence[str] | None = None) -> dict[str, float | None]:
        """mAP50 and mAP50-95 over ``classes`` (default: those it scores)."""
        chosen = [c for c in (classes if classes is not None else self.per_class)
                  if c in self.per_class]
        if not chosen:
            return {"mAP50": None, "mAP50-95": None}
        return {key: float(np.mean([self.per_class[c][key] for c in chosen]))
                for key in ("mAP50", "mAP50-95")}


def match_classes(model_names: Sequence[str], names: Sequence[str]) -> dict[str, int | None]:
    """Dataset class -> index of the model's class of the same name (case-insensitive)."""
    index: dict[str, int] = {}
    for i, name in enumerate(model_names):
        index.setdefault(str(name).strip().lower(), i)
    return {name: index.get(name.strip().lower()) for name in names}


def evaluate(detector: Any, val: ValSet, label: str) -> Scores:
    """Score a loaded detector (``class_names``, ``detect``) on ``val``."""
    matched = match_classes(detector.class_names, val.names)
    to_dataset = {model: i for i, model in enumerate(matched.values()) if model is not None}
    hits: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    started = time.perf_counter()
    for path, gt_classes, gt_boxes in zip(val.images, val.classes, val.boxes):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path} cannot be read as an image: the dataset is damaged; "
                             "export it again")
        found = detector.detect(image)
        keep = np.isin(found.class_ids, list(to_dataset)) & (found.scores >= MIN_SCORE)
        cls = np.array([to_dataset[int(c)] for c in found.class_ids[keep]], dtype=np.int64)
        hits.append(match(gt_classes, gt_boxes, cls, found.boxes[keep], found.scores[keep]))
        scores.append(found.scores[keep])
        classes.append(cls)
    seconds = time.perf_counter() - started
    all_hits = np.concatenate(hits) if hits else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    counts = val.box_counts()
    per_class = {}
    for i, name in enumerate(val.names):
        if matched[name] is None or not counts[name]:
            continue
        mine = all_classes == i
        ap = class_ap(all_hits[mine], all_scores[mine], counts[name])
        per_class[name] = {"mAP50": float(ap[0]), "mAP50-95": float(ap.mean())}
    names = [str(n) for n in detector.class_names]
    return Scores(label, {name: None if m is None else names[m] for name, m in matched.items()},
                  per_class, len(val.images), seconds, dict(counts))


# --- verdict and report ----------------------------------------------------------------------

@dataclass
class Verdict:
    worse: bool
    compared: list[str]  # classes both models score
    base: dict[str, float | None]
    new: dict[str, float | None]
    text: str


def judge(base: Scores, new: Scores) -> Verdict:
    compared = [c for c in new.per_class if c in base.per_class]
    base_mean, new_mean = base.mean(compared), new.mean(compared)
    if not compared:
        text = ("the base model knows none of the dataset's classes with val boxes "
                f"({', '.join(new.per_class) or 'none'}): nothing to compare; the new model "
                "is judged on its own scores")
        return Verdict(False, [], base_mean, new_mean, text)
    b, n = base_mean["mAP50-95"], new_mean["mAP50-95"]
    assert b is not None and n is not None
    worse = n < b
    word = "worse than" if worse else ("as good as" if n == b else "better than")
    text = (f"the new model is {word} the base: mAP50-95 {n:.4f} against {b:.4f} over "
            f"{', '.join(compared)}")
    return Verdict(worse, compared, base_mean, new_mean, text)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def report_markdown(title: str, base: Scores, new: Scores, verdict: Verdict, *,
                    split: str, about: Mapping[str, Any], curves: str | None) -> str:
    """The markdown report of a round."""
    lines = [f"# {title}", ""]
    for key, value in about.items():
        lines.append(f"* {key}: {value}")
    lines += ["", "## Verdict", "", verdict.text + ".", ""]
    if split != "val":
        lines += ["**The dataset has no val split: these scores are on the train images, "
                  "which the new model has seen.**", ""]
    lines += [f"## Scores on the {split} split ({new.images} images)", "",
              "| class | val boxes | base class | base mAP50 | base mAP50-95 | new mAP50 | "
              "new mAP50-95 |", "|---|---|---|---|---|---|---|"]
    for name in new.matched:
        b, n = base.per_class.get(name, {}), new.per_class.get(name, {})
        lines.append(f"| {name} | {new.boxes.get(name, 0)} | {base.matched.get(name) or '–'} "
                     f"| {_cell(b.get('mAP50'))} | {_cell(b.get('mAP50-95'))} "
                     f"| {_cell(n.get('mAP50'))} | {_cell(n.get('mAP50-95'))} |")
    bm, nm = base.mean(), new.mean()
    lines.append(f"| **all** | {sum(new.boxes.values())} | | {_cell(bm['mAP50'])} | "
                 f"{_cell(bm['mAP50-95'])} | {_cell(nm['mAP50'])} | {_cell(nm['mAP50-95'])} |")
    lines += ["", f"Base: `{base.model}` ({base.seconds:.1f} s); new: `{new.model}` "
              f"({new.seconds:.1f} s). Each model's 'all' is over the classes it scores; the "
              "verdict compares the classes both score.", ""]
    if curves:
        lines += ["## Training curves", "", f"![training curves]({curves})", ""]
    return "\n".join(lines)


def scores_json(base: Scores, new: Scores, verdict: Verdict, split: str) -> dict[str, Any]:
    return {"split": split, "base": asdict(base), "new": asdict(new),
            "verdict": {"worse": verdict.worse, "compared": verdict.compared,
                        "base": verdict.base, "new": verdict.new, "text": verdict.text}}
