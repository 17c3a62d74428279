"""Re-ID embedders on real vtest.avi person crops: throughput batched (all crops of a frame in
one call) against one crop per call, and how well they tell people apart (mean cosine of the
same person 2 frames apart vs different people in one frame).

Run: python tools/bench/reid_speed.py [--quick] [--repeats R]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import cv2
import numpy as np

from common import header, markdown_table, use_local_models, vtest_video

from autotrack.detectors import load_detector
from autotrack.geometry import iou_matrix
from autotrack.reid import load_embedder

MODELS = ("person-reid-0248", "person-reid-0287")
STEP = 10  # frames between sampled frames (throughput); pairs are 2 frames apart


def person_boxes(detector, frame: np.ndarray) -> np.ndarray:
    found = detector.detect(frame)
    keep = (found.class_ids == 0) & (found.scores >= 0.5)
    return found.boxes[keep]


def sample(frames: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(frame, boxes, frame two later, its boxes) every STEP frames of vtest.avi."""
    detector = load_detector("yolox-nano")
    capture = cv2.VideoCapture(str(vtest_video()))
    decoded = []
    while len(decoded) < frames * STEP:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    out = []
    for start in range(0, len(decoded) - 2, STEP):
        a, b = decoded[start], decoded[start + 2]
        out.append((a, person_boxes(detector, a), b, person_boxes(detector, b)))
    return out


def separation(embedder, pairs) -> tuple[float, float, int, int]:
    """Mean cosine of the same person (IoU > 0.6 across 2 frames, one-to-one) and of
    different people in one frame."""
    same, different = [], []
    for a, boxes_a, b, boxes_b in pairs:
        if not len(boxes_a) or not len(boxes_b):
            continue
        ea, eb = embedder.embed(a, boxes_a), embedder.embed(b, boxes_b)
        overlap = iou_matrix(boxes_a, boxes_b)
        for i in range(len(boxes_a)):
            j = int(overlap[i].argmax())
            if overlap[i, j] > 0.6 and overlap[:, j].argmax() == i:
                same.append(float(ea[i] @ eb[j]))
        upper = np.triu_indices(len(boxes_a), k=1)
        different.extend((ea @ ea.T)[upper].tolist())
    return float(np.mean(same)), float(np.mean(different)), len(same), len(different)


def crops_per_second(embedder, pairs, repeats: int) -> tuple[float, float]:
    frames = [(a, boxes) for a, boxes, _, _ in pairs if len(boxes)]
    crops = sum(len(boxes) for _, boxes in frames)
    embedder.embed(*frames[0])  # warm up

    def best(run) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return crops / min(times)

    batched = best(lambda: [embedder.embed(f, b) for f, b in frames])
    single = best(lambda: [embedder.embed(f, b[i:i + 1]) for f, b in frames
                           for i in range(len(b))])
    return batched, single


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: 4 frames, one repeat")
    parser.add_argument("--repeats", type=int, help="best of R timed runs (default 5)")
    args = parser.parse_args(argv)
    use_local_models()
    pairs = sample(4 if args.quick else 40)
    repeats = args.repeats or (1 if args.quick else 5)
    rows = []
    for name in MODELS:
        embedder = load_embedder(name)
        same, different, n_same, n_different = separation(embedder, pairs)
        batched, single = crops_per_second(embedder, pairs, repeats)
        rows.append([name, f"{same:.2f} ({n_same})", f"{different:.2f} ({n_different})",
                     f"{batched:.0f}", f"{single:.0f}", f"×{batched / single:.2f}"])
    print(header("Re-ID embedders on vtest.avi person crops"))
    print(f"YOLOX-Nano people (score >= 0.5) on {len(pairs)} frames {STEP} apart; same person: "
          "the crop 2 frames later with IoU > 0.6 (one-to-one); best of "
          f"{repeats} timed runs.\n")
    print(markdown_table(["embedder", "cosine same person (pairs)",
                          "cosine different people (pairs)", "batched crops/s",
                          "one-by-one crops/s", "batching"], rows))


if __name__ == "__main__":
    main()
