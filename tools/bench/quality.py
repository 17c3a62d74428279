"""Tracking quality of our ByteTrack and DeepSORT (online, and as `autotrack annotate` writes
them, with and without --refine) side by side with peer trackers fed the same detections.

Run: python tools/bench/quality.py [--quick] [--noise-seeds S] [--scene-seeds S]

Sequences (TUD-Campus and TUD-Stadtmitte, MOT15, 25 fps, scored against their ground truth):

* ``test.txt``: the boxes of a real tracker's output shipped with the sequence, IDs removed,
  every box scored 1.0 (one run);
* ``GT + noise``: the ground truth made detector-like (``common.detector_like``) per seed;
* ``rendered``: real people pasted along the same ground-truth trajectories over a real
  background, YOLOX-Nano run on the rendered pixels (``crossing_scenes.py``), per seed (a seed
  picks which person walks which trajectory); scored against the pasted boxes.

Appearance trackers (our DeepSORT, deep-sort-realtime) run only on the rendered scenes: the
other two have no pixels. They get person-reid-0248 embeddings of the detections, computed
once per scene from its rendered frames (ours through ``update(embeddings=...)``,
deep-sort-realtime through ``update_tracks(embeds=...)``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from association import roboflow_bytetrack
from common import Truth, detector_like, header, markdown_table, mot_truth, shared_data, \
    tracking_metrics, use_local_models
from crossing_scenes import crossing_scene, reid_similarity

from autotrack import peers
from autotrack.detections import Detections
from autotrack.refine import refine_tracks
from autotrack.smoothing import smooth_track
from autotrack.tracking_options import TrackingOptions
from autotrack.trackers.bytetrack import ByteTrackConfig
from autotrack.tracks import TrackCollector

FPS = 25.0  # TUD-Campus and TUD-Stadtmitte
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
MOTION = ("ours ByteTrack: online", "ours ByteTrack: annotate", "ours ByteTrack: annotate --refine",
          "roboflow SORT", "roboflow ByteTrack", "roboflow OC-SORT", "roboflow BoT-SORT (no ReID)")
APPEARANCE = ("ours DeepSORT: online", "ours DeepSORT: annotate",
              "ours DeepSORT: annotate --refine", "deep-sort-realtime (0248 embeds)")
METRICS = ("HOTA", "AssA", "MOTA", "IDF1", "IDSW")
Outputs = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Run:
    truth: Truth
    detections: list[Detections]
    embeddings: list[np.ndarray] | None = None


# ------------------------------------------------------------------------- inputs (a)
def test_txt_detections(name: str, frames: int) -> list[Detections]:
    """The boxes of the sequence's test.txt (a real tracker's output), IDs dropped, score 1."""
    rows = np.loadtxt(shared_data() / "mot" / name / "test.txt", delimiter=",", ndmin=2)
    out = []
    for t in range(frames):
        r = rows[rows[:, 0] == t]
        boxes = np.hstack([r[:, 2:4], r[:, 2:4] + r[:, 4:6]])
        out.append(Detections(boxes, np.ones(len(r)), np.zeros(len(r), dtype=np.int64)))
    return out


# --------------------------------------------------------------------------- trackers
def _per_frame(tracks, frames: int) -> Outputs:
    ids: list[list[int]] = [[] for _ in range(frames)]
    boxes: list[list[np.ndarray]] = [[] for _ in range(frames)]
    for track in tracks:
        for frame, box in zip(track.frames.tolist(), track.boxes):
            ids[frame].append(track.track_id)
            boxes[frame].append(box)
    return [(np.asarray(i, dtype=np.int64), np.asarray(b, dtype=np.float64).reshape(-1, 4))
            for i, b in zip(ids, boxes)]


def ours(tracker_name: str, mode: str, run: Run) -> Outputs:
    """Our tracker on its `autotrack annotate` defaults (TrackingOptions). mode "online": its
    per-frame output; "annotate": TrackCollector + smoothing, as `autotrack annotate` writes;
    "refine": TrackCollector + refine_tracks + smoothing, as `autotrack annotate --refine`."""
    options = TrackingOptions(tracker_name=tracker_name, refine=mode == "refine")
    tracker = options.tracker(FPS)
    collector = TrackCollector()
    online: Outputs = []
    for frame, d in enumerate(run.detections):
        if tracker_name == "deepsort":
            result = tracker.update(d, embeddings=run.embeddings[frame])
        else:
            result = tracker.update(d)
        online.append((result.track_ids, result.boxes))
        collector.add(frame, result)
    if mode == "online":
        return online
    tracks = collector.tracks()
    refine = options.refine_config(FPS)
    if refine is not None:  # the pipeline's order: refine (no appearance), then smooth
        tracks = refine_tracks(tracks, config=refine).tracks
    return _per_frame([smooth_track(t, options.smooth) for t in tracks], len(run.detections))


def roboflow(name: str, run: Run) -> Outputs:
    import trackers

    common = dict(lost_track_buffer=30, frame_rate=FPS)
    if name == "roboflow SORT":
        tracker = trackers.SORTTracker(**common)
    elif name == "roboflow ByteTrack":
        tracker = roboflow_bytetrack(ByteTrackConfig(frame_rate=FPS))
    elif name == "roboflow OC-SORT":
        tracker = trackers.OCSORTTracker(**common)
    else:  # BoT-SORT: its camera-motion compensation needs frames (static cameras here)
        tracker = trackers.BoTSORTTracker(**common, enable_cmc=False)
    out: Outputs = []
    for d in run.detections:
        result = tracker.update(peers.supervision_detections(d))
        confirmed = result.tracker_id >= 0
        out.append((result.tracker_id[confirmed].astype(np.int64),
                    result.xyxy[confirmed].astype(np.float64)))
    return out


def deep_sort_realtime(run: Run, min_confidence: float = 0.5) -> Outputs:
    """deep-sort-realtime on its defaults, fed the detections scored >= min_confidence (our
    DeepSORT's threshold; it has none) and their embeddings; reports confirmed tracks
    matched this frame, at the matched detection's box (as ours does)."""
    from deep_sort_realtime.deepsort_tracker import DeepSort

    tracker = DeepSort(embedder=None)
    out: Outputs = []
    for d, e in zip(run.detections, run.embeddings):
        keep = d.scores >= min_confidence
        boxes = d.boxes[keep]
        raw = [([b[0], b[1], b[2] - b[0], b[3] - b[1]], float(s), "person")
               for b, s in zip(boxes, d.scores[keep])]
        tracks = tracker.update_tracks(raw, embeds=list(e[keep]))
        ids, tboxes = [], []
        for t in tracks:
            if t.is_confirmed() and t.time_since_update == 0:
                box = t.to_ltrb(orig=True)
                if box is None:
                    box = t.to_ltrb()
                ids.append(int(t.track_id))
                tboxes.append(np.asarray(box, dtype=np.float64))
        out.append((np.asarray(ids, dtype=np.int64), np.asarray(tboxes).reshape(-1, 4)))
    return out


RUNNERS: dict[str, Callable[[Run], Outputs]] = {
    "ours ByteTrack: online": lambda r: ours("bytetrack", "online", r),
    "ours ByteTrack: annotate": lambda r: ours("bytetrack", "annotate", r),
    "ours ByteTrack: annotate --refine": lambda r: ours("bytetrack", "refine", r),
    "ours DeepSORT: online": lambda r: ours("deepsort", "online", r),
    "ours DeepSORT: annotate": lambda r: ours("deepsort", "annotate", r),
    "ours DeepSORT: annotate --refine": lambda r: ours("deepsort", "refine", r),
    "deep-sort-realtime (0248 embeds)": deep_sort_realtime,
}
for _name in MOTION[3:]:
    RUNNERS[_name] = lambda r, n=_name: roboflow(n, r)


# ------------------------------------------------------------------------------ main
def evaluate(label: str, runs: Sequence[Run], names: Sequence[str]) -> list[list[object]]:
    rows = []
    for name in names:
        scores = [tracking_metrics(run.truth, RUNNERS[name](run)) for run in runs]
        mean = {m: float(np.mean([s[m] for s in scores])) for m in METRICS}
        rows.append([label, name, len(runs),
                     *(f"{100 * mean[m]:.1f}" for m in METRICS if m != "IDSW"),
                     f"{mean['IDSW']:.1f}"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: TUD-Campus only, 1 seed each")
    parser.add_argument("--noise-seeds", type=int, help="GT + noise seeds (default 5)")
    parser.add_argument("--scene-seeds", type=int, help="rendered scene seeds (default 3)")
    args = parser.parse_args(argv)
    noise_seeds = args.noise_seeds or (1 if args.quick else 5)
    scene_seeds = args.scene_seeds or (1 if args.quick else 3)
    use_local_models()
    started = time.perf_counter()

    rows: list[list[object]] = []
    similarity = []
    for name in SEQUENCES[:1] if args.quick else SEQUENCES:
        truth = mot_truth(name)
        rows += evaluate(f"{name} · test.txt boxes (score 1.0)",
                         [Run(truth, test_txt_detections(name, truth.frames))], MOTION)
        rows += evaluate(f"{name} · GT + detector-like noise",
                         [Run(truth, detector_like(truth, seed)) for seed in range(noise_seeds)],
                         MOTION)
        scenes = [crossing_scene(name, seed) for seed in range(scene_seeds)]
        similarity += [reid_similarity(s) for s in scenes]
        rows += evaluate(f"{name} · rendered, YOLOX-Nano",
                         [Run(s.truth, s.detections, s.embeddings) for s in scenes],
                         MOTION + APPEARANCE)

    print(header("Tracking quality: ours vs peers on the same detections"))
    print("HOTA, AssA (mean over IoU 0.05-0.95), MOTA, IDF1 in %, ID switches (IoU 0.5), by "
          "`autotrack.evaluate` (TrackEval's metric classes); mean over seeds where seeded "
          f"(GT + noise: seeds 0..{noise_seeds - 1}; rendered: seeds 0..{scene_seeds - 1}). "
          "Every tracker on the defaults `autotrack annotate` or its library gives it "
          "(roboflow ByteTrack at the nearest setting to ours, as in association.py; SORT, "
          "OC-SORT, BoT-SORT with lost_track_buffer 30 at 25 fps, BoT-SORT without ReID and "
          "camera-motion compensation); appearance trackers only on the rendered scenes. "
          "'online': the tracker's per-frame output; 'annotate': what `autotrack annotate` "
          "writes (collected tracks, smoothed 1 frame); '--refine': refined, then smoothed.\n")
    print(markdown_table(["sequence", "tracker", "seeds", *METRICS], rows,
                         [False, False] + [True] * (1 + len(METRICS))))
    same = np.mean([s[0] for s in similarity])
    diff = np.mean([s[1] for s in similarity])
    print(f"\nperson-reid-0248 on the rendered scenes' detections (matched to a pasted box at "
          f"IoU >= 0.5, {sum(s[2] for s in similarity)} detections): mean cosine {same:.2f} "
          f"between detections of the same person, {diff:.2f} between different people.")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
