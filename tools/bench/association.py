"""Association throughput of our ByteTrack vs roboflow ``trackers`` and ultralytics, on
identical detections, plus tracking quality (TrackEval's HOTA, CLEAR and Identity metrics)
on real MOTChallenge trajectories and on the synthetic scenes, and a simple identity check.

Run: python tools/bench/association.py [--quick] [--repeats R] [--seeds S] [--synthetic-seeds S]

Only ``update`` calls are timed: every tracker gets its own input type built beforehand
(ours ``Detections``, roboflow ``supervision.Detections``, ultralytics its ``Boxes``-like
object via ``peers.ultralytics_results``), and a fresh tracker per run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from common import (METRICS, Truth, best_of_interleaved, detector_like, header, markdown_table,
                    mot_truth, ratio, tracking_metrics, vtest_detections)

from autotrack import peers
from autotrack.detections import Detections
from autotrack.geometry import iou_matrix
from autotrack.synthetic import Scene, SceneConfig, make_scene
from autotrack.smoothing import smooth_track
from autotrack.tracking_options import TrackingOptions
from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig
from autotrack.tracks import TrackCollector

CONFIG = ByteTrackConfig()  # the ByteTrack paper's MOT17 settings, our default
TRACKERS = ("ours", "roboflow", "ultralytics")  # timed
# Quality: ours as `autotrack annotate` writes tracks, and as the online tracker reports them.
QUALITY_TRACKERS = ("ours: annotate", "ours: online", "roboflow", "ultralytics")
OUTPUT_MIN_IOU = 0.5  # an output box stands for the input box it overlaps this much
MOT_SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")  # real pedestrian trajectories (MOT15)
METRIC_HEADERS = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "IDF1", "ID switches")
# --quick checks that the script still runs end to end, on the least input that does
QUICK_VTEST_FRAMES = 50
QUICK_SYNTHETIC_FRAMES = 30
QUICK_MOT_SEQUENCES = MOT_SEQUENCES[:1]


@dataclass(frozen=True)
class Source:
    name: str
    detections: list[Detections]
    truth_ids: list[np.ndarray] | None  # per frame, true object per detection (-1: none)


# ------------------------------------------------------------------------ the trackers
def roboflow_bytetrack(config: ByteTrackConfig) -> Any:
    """roboflow's ByteTrackTracker set as close to ``config`` as its knobs allow.

    It has one IoU gate for both stages (here 1 - match_thresh = IoU 0.2, no score
    fusion) and confirms a track after 2 consecutive hits, where ByteTrack confirms on
    the second frame too; every box below the high threshold is a low box.
    """
    from trackers import ByteTrackTracker

    return ByteTrackTracker(
        lost_track_buffer=config.track_buffer,
        frame_rate=config.frame_rate,
        track_activation_threshold=config.new_track_thresh,
        minimum_consecutive_frames=2,
        minimum_iou_threshold=1.0 - config.match_thresh,
        high_conf_det_threshold=config.track_high_thresh,
    )


def prepared_cases(source: Source) -> dict[str, Callable[[], Callable[[], object]]]:
    """Per tracker: build the inputs once; each call builds a fresh tracker and returns
    the loop to time."""
    ours_in = source.detections
    roboflow_in = [peers.supervision_detections(d) for d in ours_in]
    ultralytics_in = [peers.ultralytics_results(d) for d in ours_in]

    def loop(tracker: Any, inputs: Sequence[object]) -> Callable[[], object]:
        update = tracker.update
        return lambda: [update(x) for x in inputs]

    return {
        "ours": lambda: loop(ByteTrack(CONFIG), ours_in),
        "roboflow": lambda: loop(roboflow_bytetrack(CONFIG), roboflow_in),
        "ultralytics": lambda: loop(peers.ultralytics_bytetrack(CONFIG), ultralytics_in),
    }


def annotate_outputs(detections: Sequence[Detections]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame, what `autotrack annotate` writes on its defaults: ByteTrack reporting
    detection boxes, each track's first frame included, smoothed offline over time."""
    options = TrackingOptions()
    tracker = options.tracker(CONFIG.frame_rate)
    collector = TrackCollector()
    for frame, d in enumerate(detections):
        collector.add(frame, tracker.update(d))
    ids: list[list[int]] = [[] for _ in detections]
    boxes: list[list[np.ndarray]] = [[] for _ in detections]
    for track in collector.tracks():
        track = smooth_track(track, options.smooth)
        for frame, box in zip(track.frames.tolist(), track.boxes):
            ids[frame].append(track.track_id)
            boxes[frame].append(box)
    return [(np.asarray(i, dtype=np.int64), np.asarray(b, dtype=np.float64).reshape(-1, 4))
            for i, b in zip(ids, boxes)]


def tracker_outputs(name: str, detections: Sequence[Detections]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(track ids, xyxy boxes) per frame, confirmed tracks only, from one tracker."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    if name == "ours: annotate":
        return annotate_outputs(detections)
    if name == "ours: online":
        tracker = ByteTrack(CONFIG)
        for d in detections:
            result = tracker.update(d)
            out.append((result.track_ids, result.boxes))
    elif name == "ultralytics":
        tracker = peers.ultralytics_bytetrack(CONFIG)
        for d in detections:
            result = peers.from_ultralytics(tracker.update(peers.ultralytics_results(d)))
            out.append((result.track_ids, result.boxes))
    else:
        tracker = roboflow_bytetrack(CONFIG)
        for d in detections:
            result = tracker.update(peers.supervision_detections(d))
            confirmed = result.tracker_id >= 0  # -1: not yet confirmed
            out.append((result.tracker_id[confirmed],
                        result.xyxy[confirmed].astype(np.float64)))
    return out


# --------------------------------------------------------------------- identity quality
@dataclass(frozen=True)
class Quality:
    objects: int  # true objects detected at least once
    ids: int  # distinct track IDs output
    switches: int  # changes of the ID on a true object between its covered appearances
    coverage: float  # fraction of true detections that some output box stands for
    on_false: int  # output boxes standing for a false-positive detection


def identity_quality(outputs: Sequence[tuple[np.ndarray, np.ndarray]],
                     detections: Sequence[Detections], truth: Sequence[np.ndarray]) -> Quality:
    """Map each output box to the input detection it came from (one-to-one per frame,
    highest IoU, at least 0.5) and so to a true object; then count ID issues."""
    last_id: dict[int, int] = {}
    switches = covered = true_total = on_false = 0
    ids: set[int] = set()
    for (track_ids, boxes), d, truth_ids in zip(outputs, detections, truth):
        true_total += int((truth_ids >= 0).sum())
        ids.update(track_ids.tolist())
        if not len(track_ids) or not len(d):
            continue
        overlap = iou_matrix(boxes, d.boxes)
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        keep = overlap[rows, cols] >= OUTPUT_MIN_IOU
        for track_id, obj in zip(track_ids[rows[keep]].tolist(), truth_ids[cols[keep]].tolist()):
            if obj < 0:
                on_false += 1
                continue
            covered += 1
            if obj in last_id and last_id[obj] != track_id:
                switches += 1
            last_id[obj] = track_id
    objects = len(np.unique(np.concatenate([t[t >= 0] for t in truth])))
    return Quality(objects, len(ids), switches, covered / max(true_total, 1), on_false)


# ---------------------------------------------------------------- standard metrics
@dataclass(frozen=True)
class QualitySet:
    name: str
    runs: list[tuple[Truth, list[Detections]]]  # one (truth, detections) per seed


def synthetic_truth(scene: Scene) -> Truth:
    """Every object's noise-free box in every frame, missed detections included."""
    ids = np.arange(len(scene.true_boxes[0]), dtype=np.int64)
    return Truth([ids for _ in scene.true_boxes], [boxes for boxes in scene.true_boxes])


def quality_sets(quick: bool, seeds: int, synthetic_seeds: int) -> list[QualitySet]:
    """Real trajectories with detector-like detections (seeds 0..S-1), then the synthetic
    scenes (seed = objects + k: k = 0 is the scene timed above)."""
    found = []
    for name in QUICK_MOT_SEQUENCES if quick else MOT_SEQUENCES:
        truth = mot_truth(name)
        per_frame = sum(len(i) for i in truth.ids) / truth.frames
        found.append(QualitySet(
            f"{name} ({truth.frames} f, {truth.objects} ids, {per_frame:.1f}/f)",
            [(truth, detector_like(truth, seed)) for seed in range(seeds)]))
    frames = QUICK_SYNTHETIC_FRAMES if quick else 300
    for objects in (20, 200):
        runs = []
        for k in range(synthetic_seeds):
            scene = make_scene(SceneConfig(objects=objects, frames=frames, seed=objects + k))
            runs.append((synthetic_truth(scene), scene.detections))
        found.append(QualitySet(f"synthetic, {objects} objects ({frames} f)", runs))
    return found


def mean_std(values: Sequence[float], percent: bool) -> str:
    """'mean ± std' (std over seeds, n - 1), in percent for the fractions."""
    a = np.asarray(values, dtype=np.float64) * (100.0 if percent else 1.0)
    std = a.std(ddof=1) if len(a) > 1 else 0.0
    mean = f"{a.mean():.1f}"
    return f"{'0.0' if mean == '-0.0' else mean} ± {std:.1f}"


def on_detection_boxes(outputs: Sequence[tuple[np.ndarray, np.ndarray]],
                       detections: Sequence[Detections]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each output box replaced by the input detection it stands for (one-to-one per frame,
    highest IoU, at least 0.5; an output box with none is dropped): the trackers then differ
    only in which detections they report and with which IDs, not in how they smooth boxes."""
    snapped = []
    for (track_ids, boxes), d in zip(outputs, detections):
        if not len(track_ids) or not len(d):
            snapped.append((track_ids[:0], boxes[:0]))
            continue
        overlap = iou_matrix(boxes, d.boxes)
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        keep = overlap[rows, cols] >= OUTPUT_MIN_IOU
        snapped.append((track_ids[rows[keep]], d.boxes[cols[keep]]))
    return snapped


def _paired_row(label: str, ours: Sequence[dict[str, float]],
                theirs: Sequence[dict[str, float]]) -> list[object]:
    diff = {m: [o[m] - t[m] for o, t in zip(ours, theirs)] for m in METRICS}
    better = sum(d > 1e-12 for d in diff["HOTA"])
    worse = sum(d < -1e-12 for d in diff["HOTA"])
    return [label, len(ours), *(mean_std(diff[m], m != "IDSW") for m in METRICS),
            f"{better} / {len(ours) - better - worse} / {worse}"]


def quality_tables(sets: Sequence[QualitySet]) -> tuple[list[list[object]], list[list[object]]]:
    """Per set and tracker: mean ± std over seeds of each metric on the trackers' own output;
    and per set, the paired difference ours - roboflow (the same detections in each seed), on
    their own output boxes and on the detection boxes they stand for."""
    rows, paired = [], []
    for qs in sets:
        own: dict[str, list[dict[str, float]]] = {name: [] for name in QUALITY_TRACKERS}
        snapped: dict[str, list[dict[str, float]]] = {name: [] for name in QUALITY_TRACKERS}
        for truth, detections in qs.runs:
            for name in QUALITY_TRACKERS:
                outputs = tracker_outputs(name, detections)
                own[name].append(tracking_metrics(truth, outputs))
                if name in ("ours: annotate", "roboflow"):
                    snapped[name].append(
                        tracking_metrics(truth, on_detection_boxes(outputs, detections)))
        for name in QUALITY_TRACKERS:
            rows.append([qs.name, name, len(qs.runs),
                         *(mean_std([r[m] for r in own[name]], m != "IDSW") for m in METRICS)])
        paired.append(_paired_row(f"{qs.name}, own boxes", own["ours: annotate"], own["roboflow"]))
        paired.append(_paired_row(f"{qs.name}, detection boxes", snapped["ours: annotate"],
                                  snapped["roboflow"]))
    return rows, paired


# ----------------------------------------------------------------------------- main
def sources(quick: bool) -> list[Source]:
    frames = QUICK_SYNTHETIC_FRAMES if quick else 300
    vtest = vtest_detections()
    if quick:
        vtest = vtest[:QUICK_VTEST_FRAMES]
    found = [Source(f"YOLOX-Nano on vtest.avi ({len(vtest)} frames)", vtest, None)]
    for objects in (20, 200):
        scene = make_scene(SceneConfig(objects=objects, frames=frames, seed=objects))
        found.append(Source(f"synthetic, {objects} objects ({frames} frames)",
                            scene.detections, scene.truth_ids))
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"check the script runs, no numbers: {QUICK_VTEST_FRAMES} vtest and "
                             f"{QUICK_SYNTHETIC_FRAMES} synthetic frames, {QUICK_MOT_SEQUENCES[0]} "
                             "only, one run and one seed each")
    parser.add_argument("--repeats", type=int, help="rounds of best-of timing (default 7; 1 quick)")
    parser.add_argument("--seeds", type=int,
                        help="detection seeds per MOT sequence, metrics (default 10; 1 quick)")
    parser.add_argument("--synthetic-seeds", type=int,
                        help="scenes per synthetic size for the metrics (default 5; 1 quick)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 7)
    seeds = args.seeds or (1 if args.quick else 10)
    synthetic_seeds = args.synthetic_seeds or (1 if args.quick else 5)

    print(header("Association throughput: our ByteTrack vs roboflow trackers vs ultralytics"))
    print(f"Best of {repeats} interleaved runs per tracker, `update` calls only, inputs "
          f"prebuilt; all three with ByteTrack's MOT17 settings (high {CONFIG.track_high_thresh}, "
          f"new track {CONFIG.new_track_thresh}, match {CONFIG.match_thresh}, buffer "
          f"{CONFIG.track_buffer} at {CONFIG.frame_rate:g} fps).\n")
    speed_rows, quality_rows = [], []
    for source in sources(args.quick):
        best = best_of_interleaved(prepared_cases(source), repeats)
        frames = len(source.detections)
        ms = {name: best[name] / frames * 1e3 for name in TRACKERS}
        per_frame = sum(len(d) for d in source.detections) / frames
        speed_rows.append([source.name, f"{per_frame:.1f}",
                           *(f"{ms[name]:.3f}" for name in TRACKERS),
                           ratio(ms["roboflow"], ms["ours"]), ratio(ms["ultralytics"], ms["ours"])])
        if source.truth_ids is None:
            continue
        for name in QUALITY_TRACKERS:
            q = identity_quality(tracker_outputs(name, source.detections), source.detections,
                                 source.truth_ids)
            quality_rows.append([source.name, name, q.objects, q.ids, q.switches,
                                 f"{q.coverage:.1%}", q.on_false])
    print(markdown_table(
        ["detections", "dets/frame", "ours ms/frame", "roboflow ms/frame",
         "ultralytics ms/frame", "ours vs roboflow", "ours vs ultralytics"], speed_rows))
    metric_rows, paired_rows = quality_tables(quality_sets(args.quick, seeds, synthetic_seeds))
    print("\nTracking quality, computed by TrackEval's own metric classes (`metrics.HOTA`, "
          "`CLEAR`, `Identity`); mean ± std over seeds (std with n - 1). TUD-*: MOT15 ground "
          "truth (real pedestrian trajectories) made into detector-like detections per seed "
          "(corners jittered by 3% of the box size, 5% missed, 15% scored 0.12-0.5, 0.1 false "
          "positives per frame, IDs removed), scored against the clean ground truth. Synthetic: "
          "scored against every object's noise-free box (seed = objects + k). 'ours: annotate' "
          "is what `autotrack annotate` writes (detection boxes, each track's first frame, "
          "smoothed over time); 'ours: online' is the tracker's own per-frame output. HOTA, "
          "DetA, AssA, LocA in % (mean over IoU 0.05-0.95); MOTA, IDF1 in % and ID switches "
          "at IoU 0.5:\n")
    print(markdown_table(["sequence", "tracker", "seeds", *METRIC_HEADERS], metric_rows,
                         [False, False] + [True] * (1 + len(METRICS))))
    print("\nPaired difference ours - roboflow on the same detections (mean ± std over seeds; "
          "positive is better for ours except ID switches) and the seeds where ours' HOTA is "
          "higher / equal / lower. 'own boxes': what each tracker outputs (ours: annotate, "
          "smoothed detection boxes; roboflow the matched detection box); 'detection boxes': each output box "
          "replaced by the input detection it stands for (IoU >= 0.5, one-to-one), so only "
          "which detections are reported under which IDs differs:\n")
    print(markdown_table(["sequence", "seeds", *(f"Δ {h}" for h in METRIC_HEADERS),
                          "HOTA ours >/=/< roboflow"], paired_rows))
    print("\nIdentity quality where truth is known (synthetic scenes; each output box is "
          "mapped to the input detection it overlaps most, IoU >= 0.5, hence to a true "
          "object):\n")
    print(markdown_table(
        ["scene", "tracker", "true objects", "IDs issued", "ID switches", "coverage",
         "boxes on false positives"], quality_rows, [False, False] + [True] * 5))


if __name__ == "__main__":
    main()
