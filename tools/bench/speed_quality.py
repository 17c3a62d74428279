"""What `autotrack annotate`'s fast settings cost on ground truth: ``--detect-every K`` and
the int8 YOLOX-Nano against the default (every frame, float model).

Run: python tools/bench/speed_quality.py [--quick] [--scene-seeds S] [--int8-seeds S]

* ``--detect-every K`` on the rendered TUD scenes (``crossing_scenes.py``: real people pasted
  along the TUD trajectories, YOLOX-Nano on the rendered pixels, scored against the pasted
  boxes) and on MOT17-02/04/09 with their public FRCNN detections; the detections of the
  skipped frames are dropped, the rest goes through ``pipeline.collect_tracks`` (the code
  ``autotrack annotate`` runs: ByteTrack advanced through the skipped frames, skipped frames
  bridged) and the annotate smoothing.
* int8: its boxes against the float model's on every frame of vtest.avi (recall of the float
  detections at IoU >= 0.5, one to one, and the mean IoU of the matched pairs), and HOTA with
  int8 detections on rendered TUD scenes, alone and with ``--detect-every 2``.

HOTA, DetA, AssA, MOTA, IDF1 in % (``autotrack.evaluate``); mean over seeds, and the mean
paired difference to the default on the same seeds.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from common import Truth, header, markdown_table, mot_truth, tracking_metrics, \
    use_local_models, vtest_video
from crossing_scenes import DETECT_MIN_SCORE, PERSON, crossing_scene, render
from merge import public_detections  # MOT17's det.txt, one class, scores clipped to [0, 1]

from autotrack.detect_every import tracker_frame_rate
from autotrack.detections import Detections
from autotrack.geometry import iou_matrix
from autotrack.overlap import Detected
from autotrack.pipeline import collect_tracks
from autotrack.smoothing import smooth_track
from autotrack.tracking_options import TrackingOptions

TUD = ("TUD-Campus", "TUD-Stadtmitte")
TUD_FPS = 25.0
MOT17 = ("MOT17-02-FRCNN", "MOT17-04-FRCNN", "MOT17-09-FRCNN")
MOT17_FPS = 30.0
EVERY = (1, 2, 3)
METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
INT8 = "yolox-nano-int8"


def annotate_tracks(detections: Sequence[Detections], fps: float, every: int
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """What `autotrack annotate --detect-every every` writes for these per-frame detections,
    as (ids, boxes) per frame: detections of skipped frames dropped."""
    options = TrackingOptions()
    tracker = options.tracker(tracker_frame_rate(fps, every, options.tracker_name))
    stream = (Detected(t, None, d if t % every == 0 else None) for t, d in enumerate(detections))
    tracks, _ = collect_tracks(stream, tracker, every=every)
    ids: list[list[int]] = [[] for _ in range(len(detections))]
    boxes: list[list[np.ndarray]] = [[] for _ in range(len(detections))]
    for track in (smooth_track(t, options.smooth) for t in tracks):
        for frame, box in zip(track.frames.tolist(), track.boxes):
            ids[frame].append(track.track_id)
            boxes[frame].append(box)
    return [(np.asarray(i, dtype=np.int64), np.asarray(b, dtype=np.float64).reshape(-1, 4))
            for i, b in zip(ids, boxes)]


def score(truth: Truth, detections: Sequence[Detections], fps: float, every: int
          ) -> dict[str, float]:
    return tracking_metrics(truth, annotate_tracks(detections, fps, every))


Case = tuple[Truth, tuple[list[Detections], ...]]  # truth, and detections from each model


def rows_for(label: str, cases: Sequence[Case], fps: float,
             settings: Sequence[tuple[str, int, int]]) -> list[list[object]]:
    """One row per setting (name, which detections of each case, every): the mean over
    the cases, and the paired mean difference to the first setting."""
    scores = {name: [score(truth, dets[which], fps, every) for truth, dets in cases]
              for name, which, every in settings}
    base = scores[settings[0][0]]
    rows = []
    for name, _, _ in settings:
        mine = scores[name]
        mean = {m: 100 * float(np.mean([s[m] for s in mine])) for m in METRICS}
        delta = 100 * float(np.mean([s["HOTA"] - b["HOTA"] for s, b in zip(mine, base)]))
        worst = 100 * min(s["HOTA"] - b["HOTA"] for s, b in zip(mine, base))
        rows.append([label, name, len(cases), *(f"{mean[m]:.1f}" for m in METRICS),
                     f"{delta:+.1f}", f"{worst:+.1f}"])
    return rows


def int8_detector():
    """The int8 model from the models folders, or built into a temporary folder."""
    from autotrack.detectors import load_detector
    from autotrack.errors import ModelNotFoundError

    try:
        return load_detector(INT8, min_score=DETECT_MIN_SCORE, threads=1)
    except ModelNotFoundError:
        from autotrack.detectors.quantize import calibration_frames, quantize_yolox
        from autotrack.models import BUILT, resolve_model

        folder = Path(tempfile.mkdtemp(prefix="autotrack-int8-"))
        built = quantize_yolox(resolve_model("yolox-nano"), calibration_frames(vtest_video()),
                               folder / BUILT[INT8].filename)
        return load_detector(built, min_score=DETECT_MIN_SCORE, threads=1)


def int8_on_vtest(int8, frames: int | None) -> tuple[float, float, float, int]:
    """(recall of float boxes scored >= 0.5, mean matched IoU, share of int8 boxes >= 0.5
    that match a float box, float boxes) on vtest.avi."""
    from autotrack.detectors import load_detector
    from autotrack.video import FrameSource

    reference = load_detector("yolox-nano", min_score=DETECT_MIN_SCORE, threads=1)
    found = matched = kept = kept_matched = 0
    ious: list[float] = []
    for _, frame in itertools.islice(FrameSource(vtest_video()), frames):
        a, b = reference.detect(frame), int8.detect(frame)
        a_boxes, b_boxes = a.boxes[a.scores >= 0.5], b.boxes[b.scores >= 0.5]
        found += len(a_boxes)
        kept += len(b_boxes)
        if len(a_boxes) and len(b.boxes):
            overlap = iou_matrix(a_boxes, b.boxes)
            rows, cols = linear_sum_assignment(-overlap)
            good = overlap[rows, cols] >= 0.5
            matched += int(good.sum())
            ious += overlap[rows, cols][good].tolist()
        if len(b_boxes) and len(a.boxes):
            overlap = iou_matrix(b_boxes, a.boxes)
            rows, cols = linear_sum_assignment(-overlap)
            kept_matched += int((overlap[rows, cols] >= 0.5).sum())
    return matched / found, float(np.mean(ious)), kept_matched / max(kept, 1), found


def int8_scene_detections(int8, sequence: str, seed: int) -> list[Detections]:
    out = []
    for frame, _, _ in render(sequence, seed):
        d = int8.detect(frame)
        out.append(d.select(d.class_ids == PERSON))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: TUD-Campus, 1 seed, "
                             "K 1 and 2, MOT17-09, 30 vtest frames")
    parser.add_argument("--scene-seeds", type=int,
                        help="rendered scene seeds for --detect-every (default 6)")
    parser.add_argument("--int8-seeds", type=int,
                        help="rendered scene seeds for int8 (default 3)")
    args = parser.parse_args(argv)
    use_local_models()
    started = time.perf_counter()
    scene_seeds = args.scene_seeds or (1 if args.quick else 6)
    int8_seeds = args.int8_seeds or (1 if args.quick else 3)
    sequences = TUD[:1] if args.quick else TUD
    every = EVERY[:2] if args.quick else EVERY
    settings = [(f"--detect-every {k}", 0, k) for k in every]

    rows: list[list[object]] = []
    for name in sequences:
        scenes = [crossing_scene(name, seed) for seed in range(scene_seeds)]
        rows += rows_for(f"{name} rendered", [(s.truth, (s.detections,)) for s in scenes],
                         TUD_FPS, settings)
    for name in MOT17[2:] if args.quick else MOT17:
        truth = mot_truth(name)
        rows += rows_for(f"{name} public dets",
                         [(truth, (public_detections(name, truth.frames),))], MOT17_FPS,
                         settings)

    int8 = int8_detector()
    recall, mean_iou, precision, boxes = int8_on_vtest(int8, 30 if args.quick else None)
    int8_rows: list[list[object]] = []
    int8_settings = [("float", 0, 1), ("int8", 1, 1), ("int8 + --detect-every 2", 1, 2)]
    for name in sequences:
        cases = []
        for seed in range(int8_seeds):
            scene = crossing_scene(name, seed)
            cases.append((scene.truth, (scene.detections,
                                        int8_scene_detections(int8, name, seed))))
        int8_rows += rows_for(f"{name} rendered", cases, TUD_FPS, int8_settings)

    columns = ["sequence", "setting", "runs", *METRICS, "Δ HOTA", "worst Δ HOTA"]
    align = [False, False, True] + [True] * (len(METRICS) + 2)
    print(header("What the fast `autotrack annotate` settings cost on ground truth"))
    print("`--detect-every K`: the detections of skipped frames dropped, the rest through "
          "`pipeline.collect_tracks` and the annotate smoothing (ByteTrack, CLI defaults). "
          f"Rendered TUD: seeds 0..{scene_seeds - 1}, YOLOX-Nano (float) on the rendered "
          "pixels; MOT17: the public FRCNN detections, 30 fps. Δ: paired difference to "
          "`--detect-every 1` on the same runs (mean; worst run).\n")
    print(markdown_table(columns, rows, align))
    print(f"\nint8 (`{INT8}`) against the float model on {boxes} float boxes (score >= 0.5) "
          f"of vtest.avi: recall {recall:.3f} at IoU >= 0.5 (one to one), mean IoU of the "
          f"matched pairs {mean_iou:.3f}; {precision:.3f} of the int8 boxes scored >= 0.5 "
          "match a float box.\n")
    print(f"int8 on the rendered TUD scenes (seeds 0..{int8_seeds - 1}; Δ to the float "
          "model on the same seeds):\n")
    print(markdown_table(columns, int8_rows, align))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
