"""Pixel scenes with real crossings: real people pasted along real trajectories.

A small, honest scene generator for appearance trackers (DeepSORT needs pixels; the TUD
ground truth has none):

* **Background:** the per-pixel median of 100 frames spread over ``vtest.avi`` (the people
  move, the mall does not), so an empty real background.
* **People:** real crops cut from ``vtest.avi`` where the real detector (YOLOX-Nano) finds a
  person with score >= 0.7, isolated (no other detection scored >= 0.3 touches it), at
  least ``MIN_CROP_HEIGHT`` px tall and off the frame edges. Crops are taken greedily from
  frames spread over the video and kept only if their person-reid-0248 embedding has cosine
  below ``DISTINCT_COSINE`` to every crop already kept, so the pool holds distinct people.
* **Motion:** each identity of a TUD ground truth (``gt.txt``, 640x480) gets one crop (a seed
  picks which, without replacement), resized to its box scaled by 768/640 = 1.2 (the
  background's size) in every frame, and pasted as a rectangle whose alpha ramps from 0 to 1
  over the outer ``FEATHER`` of its smaller side. Paint order is by foot y (box bottom),
  nearer people over farther ones, so the real trajectories' crossings become real
  occlusions.
* **Truth:** the pasted boxes (integer pixels, clipped to the frame), every identity in every
  frame the ground truth has it, however occluded (as MOT15's ground truth).
* **Detections:** YOLOX-Nano on the rendered frames (score >= 0.1, class person), and the
  person-reid-0248 embedding of every detection from the same frames.

Detections, embeddings and truth are cached per (sequence, seed) in
``$AUTOTRACK_BENCH_CACHE`` (default /tmp/autotrack-bench); frames are re-rendered on demand
(``render``), never stored.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from common import DETECTOR, Truth, _cache_dir, mot_truth, use_local_models, vtest_detections, \
    vtest_video

from autotrack.detections import Detections

VERSION = "1"  # bump when rendering or selection changes (part of the cache key)
SCALE = 768 / 640  # TUD (640x480) to the vtest background (768x576)
CROP_MIN_SCORE = 0.7
MIN_CROP_HEIGHT = 90  # px in vtest
DISTINCT_COSINE = 0.5  # a new crop must be below this cosine to every kept crop
POOL_SIZE = 12
FEATHER = 0.12  # fraction of the smaller side over which alpha ramps 0 -> 1
DETECT_MIN_SCORE = 0.1
PERSON = 0  # COCO class id
REID = "person-reid-0248"


@dataclass(frozen=True)
class CrossingScene:
    """One rendered sequence: truth, detections and embeddings per frame."""

    sequence: str
    seed: int
    truth: Truth
    detections: list[Detections]
    embeddings: list[np.ndarray]  # (N, 256) per frame, row i for detection i
    crop_of: dict[int, int]  # truth id -> pool crop index


# --------------------------------------------------------------------- background, crops
def _read_frames(indices: list[int]) -> dict[int, np.ndarray]:
    wanted, found = set(indices), {}
    capture = cv2.VideoCapture(str(vtest_video()))
    index = 0
    while wanted - found.keys():
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            found[index] = frame
        index += 1
    capture.release()
    return found


@lru_cache(maxsize=1)
def background() -> np.ndarray:
    """Median over 100 frames spread over vtest.avi: the mall without its people."""
    total = int(cv2.VideoCapture(str(vtest_video())).get(cv2.CAP_PROP_FRAME_COUNT))
    frames = _read_frames(np.linspace(0, total - 1, 100).astype(int).tolist())
    return np.median(np.stack(list(frames.values())), axis=0).astype(np.uint8)


@lru_cache(maxsize=1)
def _embedder():
    use_local_models()
    from autotrack.reid import load_embedder

    return load_embedder(REID)


@lru_cache(maxsize=1)
def crop_pool() -> list[np.ndarray]:
    """Distinct real people cut from vtest.avi where YOLOX-Nano is sure (see module doc)."""
    from autotrack.geometry import iou_matrix

    detections = vtest_detections()
    height, width = background().shape[:2]
    candidates = []  # (frame, box, score)
    for frame, d in enumerate(detections):
        strong = (d.class_ids == PERSON) & (d.scores >= CROP_MIN_SCORE)
        others = d.boxes[d.scores >= 0.3]
        for i in strong.nonzero()[0]:
            box = d.boxes[i]
            if box[3] - box[1] < MIN_CROP_HEIGHT or box[0] < 4 or box[1] < 4 \
                    or box[2] > width - 4 or box[3] > height - 4:
                continue
            overlap = iou_matrix(box[None], others)[0]
            if (overlap > 0).sum() > 1:  # itself, and nothing else
                continue
            candidates.append((frame, box, float(d.scores[i])))
    # frames spread over the video first, surest detections first within a frame
    candidates.sort(key=lambda c: (c[0] % 40, c[0], -c[2]))
    frames = _read_frames(sorted({c[0] for c in candidates}))
    embedder = _embedder()
    kept: list[np.ndarray] = []
    features: list[np.ndarray] = []
    for frame, box, _ in candidates:
        feature = embedder.embed(frames[frame], box[None])[0]
        if features and max(float(f @ feature) for f in features) >= DISTINCT_COSINE:
            continue
        x1, y1, x2, y2 = np.round(box).astype(int)
        kept.append(frames[frame][y1:y2, x1:x2].copy())
        features.append(feature)
        if len(kept) == POOL_SIZE:
            break
    return kept


# ------------------------------------------------------------------------- rendering
def _alpha(h: int, w: int) -> np.ndarray:
    ramp = max(1.0, FEATHER * min(h, w))
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / ramp
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / ramp
    return np.clip(np.minimum(ys[:, None], xs[None, :]), 0.0, 1.0)[..., None]


def pasted_truth(sequence: str) -> Truth:
    """The ground truth of ``sequence`` scaled to the background, in integer pixels, clipped."""
    truth = mot_truth(sequence)
    height, width = background().shape[:2]
    boxes = []
    for b in truth.boxes:
        scaled = np.round(b * SCALE)
        scaled[:, [0, 2]] = scaled[:, [0, 2]].clip(0, width)
        scaled[:, [1, 3]] = scaled[:, [1, 3]].clip(0, height)
        boxes.append(scaled)
    keep = [(b[:, 2] - b[:, 0] >= 2) & (b[:, 3] - b[:, 1] >= 2) for b in boxes]
    return Truth([i[k] for i, k in zip(truth.ids, keep)], [b[k] for b, k in zip(boxes, keep)])


def crop_assignment(sequence: str, seed: int) -> dict[int, int]:
    ids = np.unique(np.concatenate(mot_truth(sequence).ids)).tolist()
    pool = len(crop_pool())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pool, len(ids), replace=len(ids) > pool)
    return dict(zip(ids, chosen.tolist()))


def render(sequence: str, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame BGR uint8, truth ids, truth boxes) for every frame of the scene."""
    unscaled = mot_truth(sequence)
    truth = pasted_truth(sequence)
    crop_of = crop_assignment(sequence, seed)
    crops, base = crop_pool(), background().astype(np.float32)
    for t in range(truth.frames):
        frame = base.copy()
        # paint by foot y of the unclipped box: nearer (lower) people last, on top
        foot = {int(i): b[3] for i, b in zip(unscaled.ids[t], unscaled.boxes[t])}
        for i in np.argsort([foot[int(i)] for i in truth.ids[t]], kind="stable"):
            track_id = int(truth.ids[t][i])
            full = np.round(unscaled.boxes[t][list(unscaled.ids[t]).index(track_id)] * SCALE)
            x1, y1, x2, y2 = full.astype(int)
            w, h = x2 - x1, y2 - y1
            if w < 2 or h < 2:
                continue
            crop = cv2.resize(crops[crop_of[track_id]], (w, h), interpolation=cv2.INTER_LINEAR)
            alpha = _alpha(h, w)
            cx1, cy1 = max(x1, 0), max(y1, 0)
            cx2, cy2 = min(x2, frame.shape[1]), min(y2, frame.shape[0])
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            sub = (slice(cy1 - y1, cy2 - y1), slice(cx1 - x1, cx2 - x1))
            region = frame[cy1:cy2, cx1:cx2]
            a = alpha[sub]
            frame[cy1:cy2, cx1:cx2] = region * (1 - a) + crop[sub].astype(np.float32) * a
        yield frame.round().astype(np.uint8), truth.ids[t], truth.boxes[t]


# ----------------------------------------------------------------------- detections
def _key(sequence: str, seed: int) -> str:
    use_local_models()
    from autotrack.models import resolve_model

    digest = hashlib.sha256()
    for path in (vtest_video(), resolve_model(DETECTOR), resolve_model(REID)):
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    digest.update(f"{VERSION}|{sequence}|{seed}|{POOL_SIZE}|{DISTINCT_COSINE}".encode())
    return digest.hexdigest()[:16]


def crossing_scene(sequence: str, seed: int) -> CrossingScene:
    """The rendered scene's truth, YOLOX-Nano detections and Re-ID embeddings (cached)."""
    cache = _cache_dir() / f"crossing-{sequence}-{seed}-{_key(sequence, seed)}.npz"
    if not cache.exists():
        _compute(sequence, seed, cache)
    with np.load(cache) as data:
        n = data["counts"]
        bounds = np.cumsum(np.concatenate([[0], n]))
        tn = data["truth_counts"]
        tb = np.cumsum(np.concatenate([[0], tn]))
        dets = [Detections(data["boxes"][a:b], data["scores"][a:b], data["class_ids"][a:b])
                for a, b in zip(bounds[:-1], bounds[1:])]
        embeds = [data["embeddings"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        truth = Truth([data["truth_ids"][a:b] for a, b in zip(tb[:-1], tb[1:])],
                      [data["truth_boxes"][a:b] for a, b in zip(tb[:-1], tb[1:])])
        crop_of = dict(zip(data["crop_ids"].tolist(), data["crop_index"].tolist()))
    return CrossingScene(sequence, seed, truth, dets, embeds, crop_of)


def _compute(sequence: str, seed: int, cache) -> None:
    import os

    from autotrack.detectors import load_detector

    print(f"rendering {sequence} seed {seed} and running {DETECTOR} + {REID} "
          f"(cached in {cache}) ...", file=sys.stderr, flush=True)
    use_local_models()
    detector = load_detector(DETECTOR, min_score=DETECT_MIN_SCORE)
    embedder = _embedder()
    dets, embeds, tids, tboxes = [], [], [], []
    for frame, ids, boxes in render(sequence, seed):
        d = detector.detect(frame)
        d = d.select(d.class_ids == PERSON)
        dets.append(d)
        embeds.append(embedder.embed(frame, d.boxes) if len(d)
                      else np.zeros((0, embedder.dim), np.float32))
        tids.append(ids)
        tboxes.append(boxes)
    crop_of = crop_assignment(sequence, seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.stem + f".{os.getpid()}.tmp.npz")
    np.savez(
        partial,
        counts=np.array([len(d) for d in dets], dtype=np.int64),
        boxes=np.concatenate([d.boxes for d in dets]).reshape(-1, 4),
        scores=np.concatenate([d.scores for d in dets]),
        class_ids=np.concatenate([d.class_ids for d in dets]),
        embeddings=np.concatenate(embeds).astype(np.float32),
        truth_counts=np.array([len(i) for i in tids], dtype=np.int64),
        truth_ids=np.concatenate(tids).astype(np.int64),
        truth_boxes=np.concatenate(tboxes).reshape(-1, 4),
        crop_ids=np.array(list(crop_of), dtype=np.int64),
        crop_index=np.array(list(crop_of.values()), dtype=np.int64),
    )
    partial.replace(cache)


def reid_similarity(scene: CrossingScene, min_iou: float = 0.5) -> tuple[float, float, int]:
    """Mean cosine between embeddings of detections of the same identity and of different
    identities (each detection labelled by the truth box it overlaps >= min_iou, one-to-one),
    over the scene; returns (same, different, labelled detections)."""
    from scipy.optimize import linear_sum_assignment

    from autotrack.geometry import iou_matrix
    from autotrack.reid import l2_normalize

    features, labels = [], []
    for d, e, ids, boxes in zip(scene.detections, scene.embeddings, scene.truth.ids,
                                scene.truth.boxes):
        if not len(d) or not len(ids):
            continue
        overlap = iou_matrix(d.boxes, boxes)
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        keep = overlap[rows, cols] >= min_iou
        features.append(e[rows[keep]])
        labels.append(ids[cols[keep]])
    f = l2_normalize(np.concatenate(features).astype(np.float32))
    y = np.concatenate(labels)
    cos = f @ f.T
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    different = y[:, None] != y[None, :]
    return float(cos[same].mean()), float(cos[different].mean()), len(y)


def main(argv: list[str] | None = None) -> None:
    """Write a preview PNG of one rendered frame, truth boxes and ids drawn on it."""
    import argparse
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Preview one frame of a rendered crossing "
                                                 "scene (PNG in $AUTOTRACK_BENCH_CACHE).")
    parser.add_argument("sequence", nargs="?", default="TUD-Stadtmitte")
    parser.add_argument("seed", nargs="?", type=int, default=0)
    parser.add_argument("frame", nargs="?", type=int, default=60)
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs: frame 0 of TUD-Campus, seed 0, written to "
                             "a temporary folder and removed")
    args = parser.parse_args(argv)
    sequence, seed, at = ("TUD-Campus", 0, 0) if args.quick else (args.sequence, args.seed,
                                                                   args.frame)
    with tempfile.TemporaryDirectory(prefix="crossing-preview-") as tmp:
        folder = Path(tmp) if args.quick else _cache_dir()
        for t, (frame, ids, boxes) in enumerate(render(sequence, seed)):
            if t < at:
                continue
            for i, b in zip(ids, boxes.astype(int)):
                cv2.rectangle(frame, tuple(b[:2]), tuple(b[2:]), (0, 255, 0), 1)
                cv2.putText(frame, str(i), tuple(b[:2] + [2, 14]), 0, 0.5, (0, 255, 0), 1)
            out = folder / f"preview-{sequence}-{seed}-{t}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out), frame) or cv2.imread(str(out)) is None:
                raise SystemExit(f"{out}: could not write the preview")
            print(f"{sequence} seed {seed} frame {t}: {len(ids)} people pasted, "
                  f"{frame.shape[1]}x{frame.shape[0]}, pool of {len(crop_pool())} crops; "
                  + ("preview written and removed (--quick)" if args.quick else str(out)))
            return
    raise SystemExit(f"{sequence} has no frame {at}")


if __name__ == "__main__":  # python tools/bench/crossing_scenes.py [SEQ SEED FRAME] [--quick]
    main()
