"""``autotrack eval``: score predicted tracks against ground truth.

    autotrack eval --gt GT --pred PRED [--gt GT2 --pred PRED2 ...] [--json OUT]

Each ``--gt`` pairs with the ``--pred`` in the same position. A pair of files is one
sequence (MOTChallenge ``.txt`` or CVAT ``.xml``); a pair of folders is matched by sequence
name: ground truth ``SEQ/gt/gt.txt``, ``SEQ.txt`` or ``SEQ.xml`` against predictions
``SEQ.txt`` or ``SEQ.xml``. Prints one row per sequence and a combined row; errors a user can
fix are raised as :class:`~autotrack.errors.InputError` (one line, exit status 2 in
``autotrack``'s ``main``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from autotrack.errors import InputError

_GT_NAMES = ("{seq}/gt/gt.txt", "{seq}.txt", "{seq}.xml")
_PRED_NAMES = ("{seq}.txt", "{seq}.xml")
_SUFFIXES = (".txt", ".xml")


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` command to ``autotrack``'s subparsers; returns its parser."""
    from autotrack.evaluate.sequences import CONVENTIONS

    parser = subparsers.add_parser(
        "eval", help="score tracks against ground truth (HOTA, MOTA, IDF1, J&F)",
        description="Score predicted tracks against ground truth with TrackEval's metrics: "
                    "HOTA (DetA, AssA, LocA), MOTA, IDF1, IDSW, FP, FN, and J&F where both "
                    "sides have masks. Files are MOTChallenge .txt or CVAT for video/images "
                    "1.1 .xml; a folder pair is matched by sequence name.")
    parser.add_argument("--gt", action="append", required=True, metavar="GT",
                        help="ground-truth file or folder (repeat for more sequences)")
    parser.add_argument("--pred", action="append", required=True, metavar="PRED",
                        help="predicted tracks, file or folder (one per --gt, in order)")
    parser.add_argument("--json", metavar="OUT",
                        help="also write the scores as JSON to OUT ('-' for stdout, "
                             "instead of the table)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="mot15",
                        help="which MOT ground-truth rows are scored: mot15 (default) drops "
                             "conf-0 rows; mot16/17/20 also keep only pedestrians and ignore "
                             "predictions on distractors, as TrackEval does")
    parser.add_argument("--iou", type=_threshold, default=0.5, metavar="T",
                        help="IoU a match needs for MOTA and IDF1 (default 0.5; HOTA always "
                             "averages over 0.05..0.95)")
    parser.add_argument("--sot", action="store_true",
                        help="single-object sequences: GT and PRED hold one box per line "
                             "(x, y, w, h, or x1, y1, x2, y2 with --box-format xyxy); prints "
                             "success AUC, precision at 20 px and normalised precision")
    parser.add_argument("--box-format", choices=("xywh", "xyxy"), default="xywh",
                        help="box columns of --sot files (default xywh, as OTB and LaSOT)")
    parser.add_argument("--label", action="append", metavar="NAME",
                        help="score only objects with this CVAT label (repeatable or "
                             "comma-separated; MOT files have no labels and are kept whole)")
    return parser


# ------------------------------------------------------------------------------ inputs
def _find(folder: Path, seq: str, patterns) -> Path | None:
    for pattern in patterns:
        candidate = folder / pattern.format(seq=seq)
        if candidate.is_file():
            return candidate
    return None


def _gt_sequences(folder: Path) -> list[str]:
    names = {p.parent.parent.name for p in folder.glob("*/gt/gt.txt")}
    names |= {p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES}
    return sorted(names)


def _pairs(gts: list[str], preds: list[str]) -> list[tuple[str, Path, Path]]:
    """(sequence name, ground-truth file, prediction file) for every pair given."""
    from autotrack.evaluate.sequences import sequence_name

    if len(gts) != len(preds):
        raise InputError(f"{len(gts)} --gt but {len(preds)} --pred; give one --pred per --gt")
    out = []
    for gt_arg, pred_arg in zip(gts, preds):
        gt, pred = Path(gt_arg), Path(pred_arg)
        for path in (gt, pred):
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
        if gt.is_dir() != pred.is_dir():
            raise InputError(f"{gt} and {pred}: pair a file with a file or a folder with a folder")
        if gt.is_file():
            out.append((sequence_name(gt), gt, pred))
            continue
        sequences = _gt_sequences(gt)
        if not sequences:
            raise InputError(f"{gt}: no ground truth found (SEQ/gt/gt.txt, SEQ.txt or SEQ.xml)")
        for seq in sequences:
            gt_file = _find(gt, seq, _GT_NAMES)
            pred_file = _find(pred, seq, _PRED_NAMES)
            if pred_file is None:
                raise InputError(f"{pred}: no prediction for sequence {seq} "
                                 f"(looked for {seq}.txt and {seq}.xml)")
            out.append((seq, gt_file, pred_file))
    names = [name for name, _, _ in out]
    for name in names:
        if names.count(name) > 1:
            raise InputError(f"two sequences are named {name!r}; rename one of the files")
    return out


def _labels(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


# ------------------------------------------------------------------------------ output
_COLUMNS = (("HOTA", "pct"), ("DetA", "pct"), ("AssA", "pct"), ("LocA", "pct"),
            ("MOTA", "pct"), ("IDF1", "pct"), ("IDSW", "int"), ("FP", "int"), ("FN", "int"))
_MASK_COLUMNS = (("J&F", "pct"), ("J", "pct"), ("F", "pct"))


def _cell(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if kind == "pct" else str(int(value))


def format_table(report) -> str:
    """The report as an aligned text table (percentages, counts as integers)."""
    columns = list(_COLUMNS)
    if any("J&F" in s.metrics for s in report.sequences):
        columns += _MASK_COLUMNS
    rows = [[s.name, str(s.frames), *(_cell(s.metrics.get(c), k) for c, k in columns)]
            for s in report.sequences]
    if len(report.sequences) > 1:
        frames = sum(s.frames for s in report.sequences)
        rows.append(["COMBINED", str(frames),
                     *(_cell(report.combined.get(c), k) for c, k in columns)])
    header = ["sequence", "frames", *(c for c, _ in columns)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``autotrack eval``; returns the exit status (InputError for bad input)."""
    from autotrack.evaluate.metrics import evaluate
    from autotrack.evaluate.sequences import load_sequence

    pairs = _pairs(args.gt, args.pred)
    if args.sot:
        return _run_sot(args, pairs)
    labels = _labels(getattr(args, "label", None))
    loaded = []
    notes = []
    for name, gt_path, pred_path in pairs:
        gt = load_sequence(gt_path, ground_truth=True, convention=args.convention, name=name)
        pred = load_sequence(pred_path, ground_truth=False, name=name)
        if labels:
            gt, pred = gt.with_labels(labels), pred.with_labels(labels)
        for seq, role in ((gt, "ground truth"), (pred, "prediction")):
            if seq.skipped_shapes:
                notes.append(f"{name}: skipped {seq.skipped_shapes} {role} shapes that are not "
                             "boxes, polygons or masks")
        if gt.has_masks and pred.num_boxes and not pred.has_masks:
            notes.append(f"{name}: no J&F (the prediction has boxes but no masks)")
        elif pred.has_masks and not gt.has_masks:
            notes.append(f"{name}: no J&F (the ground truth has no masks)")
        loaded.append((gt, pred))
    report = evaluate(loaded, threshold=args.iou)

    if args.json:
        text = json.dumps({"convention": args.convention, **report.as_dict(),
                           "files": {n: {"gt": str(g), "pred": str(p)} for n, g, p in pairs}},
                          indent=2)
        if args.json == "-":
            print(text)
        else:
            out = Path(args.json)
            if not out.parent.exists():
                raise InputError(f"{out.parent}: output folder does not exist")
            out.write_text(text + "\n")
    if args.json != "-":
        print(f"IoU >= {args.iou:g} for MOTA/IDF1; HOTA averaged over IoU 0.05-0.95; "
              f"MOT ground truth as {args.convention.upper()}")
        print(format_table(report))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _box_lines(path: Path) -> np.ndarray:
    """One box per line, four numbers split by commas, tabs or spaces; NaN marks no box."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise InputError(f"{path}:{number}: not a box: {line.strip()!r}") from None
        if len(values) != 4:
            raise InputError(f"{path}:{number}: expected 4 numbers, got {len(values)}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _run_sot(args: argparse.Namespace, pairs: list[tuple[str, Path, Path]]) -> int:
    from autotrack.evaluate.sot import combine_sot, evaluate_sot

    results = {}
    for name, gt_path, pred_path in pairs:
        gt, pred = _box_lines(gt_path), _box_lines(pred_path)
        if len(gt) != len(pred):
            raise InputError(f"{name}: {len(gt)} ground-truth boxes but {len(pred)} predicted")
        results[name] = evaluate_sot(pred, gt, args.box_format)
    combined = combine_sot(list(results.values()))
    if args.json:
        text = json.dumps({"sequences": {n: r.as_dict() for n, r in results.items()},
                           "combined": combined.as_dict()}, indent=2)
        if args.json == "-":
            print(text)
            return 0
        Path(args.json).write_text(text + "\n")
    width = max(len(n) for n in [*results, "COMBINED"])
    print(f"{'sequence':<{width}}  frames  success  precision  norm.precision")
    for name, r in [*results.items(), ("COMBINED", combined)]:
        print(f"{name:<{width}}  {r.frames:6d}  {100 * r.success_auc:7.1f}  "
              f"{100 * r.precision:9.1f}  {100 * r.normalized_precision:14.1f}")
    return 0
