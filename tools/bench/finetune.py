"""The fine-tuning loop (``autotrack finetune``) on vtest.avi: a learning curve on held-back
frames, and the time of each step.

Run: python tools/bench/finetune.py [--quick] [--frames N] [--epochs E] [--imgsz S]
[--threads T]

Labels are the project's own tracks: ``autotrack annotate`` (YOLOX-Nano + ByteTrack, people
only) on the first N frames of vtest.avi stands for reviewed annotations. ``autotrack
finetune`` then runs its offline door on that XML (every keyframe plus every 5th frame,
near-duplicates dropped, val = blocks of 50 frames held back with a guard band of 5), trains
``yolo11n.yaml`` from scratch (random weights: the curve shows what the labels teach, not
what COCO taught) for E epochs, judges it against its untrained base, exports ONNX and
publishes it in a temporary models folder; finally ``autotrack annotate --detector`` runs the
published round. The learning curve is ultralytics' validation after each epoch on the
held-back frames (results.csv); the last row is our judge's score of best.pt on the same
frames. Times are wall-clock on this machine, ``--threads`` torch threads (default 1).
Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2

from common import header, markdown_table, shared_data, vtest_video


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="40 frames, 1 epoch at imgsz 32: checks the script runs")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.frames, args.epochs, args.imgsz, args.batch = 40, 1, 32, 8
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from autotrack.cli import main as autotrack

    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        root = Path(tmp)
        models = root / "models"
        models.mkdir()
        os.environ["AUTOTRACK_MODELS"] = f"{models}{os.pathsep}{shared_data() / 'models'}"
        os.environ["AUTOTRACK_OFFLINE"] = "1"
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_CONFIG_DIR"] = str(root / "ultralytics")
        frames = root / "frames"
        frames.mkdir()
        capture = cv2.VideoCapture(str(vtest_video()))
        for i in range(args.frames):
            ok, image = capture.read()
            if not ok:
                break
            cv2.imwrite(str(frames / f"{i:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        capture.release()
        times: list[tuple[str, float]] = []

        def run(step: str, argv: list[str]) -> str:
            out, err = io.StringIO(), io.StringIO()
            started = time.perf_counter()
            with redirect_stdout(out), redirect_stderr(err):
                status = autotrack(argv)
            times.append((step, time.perf_counter() - started))
            if status != 0:
                sys.stderr.write(out.getvalue() + err.getvalue())
                raise SystemExit(f"{step} failed with status {status}")
            return out.getvalue()

        xml = root / "labels.xml"
        run("labels: autotrack annotate (YOLOX-Nano + ByteTrack)",
            ["annotate", str(frames), "-o", str(xml), "--classes", "person", "-q"])
        small = args.quick
        run("autotrack finetune (all steps)", [
            "finetune", "--annotations", str(xml), "--video", str(frames), "--name", "bench",
            "--base", "yolo11n.yaml", "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
            "--batch", str(args.batch), "--workers", "0", "--force", "-q",
            "-o", str(root / "runs"), "--models", str(models),
            "--stride", "2" if small else "5", "--block", "10" if small else "50",
            "--guard", "1" if small else "5", "--val", "0.25"])
        folder = root / "runs" / "bench-r1"
        state = json.loads((folder / "run.json").read_text())
        steps = [(f"  {name}", about["seconds"]) for name, about in state["steps"].items()]
        few = root / "few"
        few.mkdir()
        for path in sorted(frames.iterdir())[:20]:
            (few / path.name).symlink_to(path)
        run("autotrack annotate --detector bench-r1 (20 frames)",
            ["annotate", str(few), "-o", str(root / "again.xml"), "--detector", "bench-r1",
             "-q"])
        manifest = json.loads((folder / "dataset" / "manifest.json").read_text())
        judged = json.loads((folder / "judge.json").read_text())
        with open(folder / "train" / "results.csv") as f:
            curve = [(int(float(row["epoch"])), float(row["metrics/mAP50(B)"]),
                      float(row["metrics/mAP50-95(B)"])) for row in csv.DictReader(f)]

    split = manifest["split"]["frames"]
    print(header("Fine-tuning loop on vtest.avi"))
    print(f"\n{args.frames} frames labelled by autotrack annotate; dataset: "
          f"{split.get('train', 0)} train and {split.get('val', 0)} held-back val frames; "
          f"yolo11n.yaml from scratch, imgsz {args.imgsz}, batch {args.batch}, "
          f"{args.threads} torch thread(s).\n")
    rows = [(epoch, f"{m50:.3f}", f"{m5095:.3f}") for epoch, m50, m5095 in curve]
    print(markdown_table(["epoch", "val mAP50", "val mAP50-95"], rows, [True, True, True]))
    new = judged["verdict"]["new"]
    base = judged["verdict"]["base"]
    print(f"\njudge (best.pt, our scorer): mAP50 {new['mAP50']:.3f}, mAP50-95 "
          f"{new['mAP50-95']:.3f}; untrained base: mAP50 {base['mAP50']:.3f}, mAP50-95 "
          f"{base['mAP50-95']:.3f}\n")
    print(markdown_table(["step", "seconds"],
                         [(name, f"{seconds:.1f}") for name, seconds in
                          [times[0], times[1], *steps, times[2]]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
