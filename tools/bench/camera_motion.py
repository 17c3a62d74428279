"""Tracking through a moving camera: the rendered TUD scenes seen through a swaying window.

Run: python tools/bench/camera_motion.py [--quick] [--seeds S]

A moving camera moves everything in the image at once. The rendered crossing scenes
(``crossing_scenes.py``: real people pasted along the TUD trajectories over vtest.avi's
background, 768x576) are viewed through a 640x480 window that sways over the canvas: sine
waves of ``SWAY_X`` sideways and ``SWAY_Y`` up and down (at most 5.0 px a frame at 25 fps,
20 at 6.25), offsets rounded to whole pixels, so the truth is exact: the pasted boxes moved
by the window's offset and clipped to it (a box with less than 2 px inside is dropped).
YOLOX-Nano detects on the cropped frames (cached like the still scenes). At 25, 12.5 and
6.25 fps (every 1st, 2nd, 4th frame, renumbered, each tracker told the rate), per scene:

* ours: ``autotrack annotate``'s tracking (``pipeline.collect_tracks`` on the frames, then
  ``pipeline.finish_tracks``: refine and smoothing), with ``--no-camera-motion`` and with
  ``--camera-motion`` (the default: ``autotrack.camera_motion`` on the frames), and the
  online pass alone, both ways;
* peers: roboflow ByteTrack (as quality.py's TUD rows), roboflow BoT-SORT on its defaults
  with its camera-motion compensation on (sparse optical flow) and given the frames, and
  ultralytics' BOTSORT on its botsort.yaml (GMC by sparse optical flow), given the frames.

The same for the still scenes (the 768x576 frames unmoved): compensation must cost nothing
there. Also the shift estimate itself: mean error against the window's true motion (swayed),
mean size (still, where it should be 0), and milliseconds per frame.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from common import (
    Outputs,
    Truth,
    _cache_dir,
    header,
    markdown_table,
    per_frame,
    tracking_metrics,
    use_local_models,
)
from crossing_scenes import (
    DETECT_MIN_SCORE,
    PERSON,
    VERSION,
    _key,
    crossing_scene,
    pasted_truth,
    render,
)
from quality import roboflow

from autotrack import peers
from autotrack.camera_motion import CameraMotion
from autotrack.detections import Detections
from autotrack.overlap import Detected
from autotrack.pipeline import collect_tracks, finish_tracks
from autotrack.tracking_options import TrackingOptions

FPS = 25.0
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
STEPS = (1, 2, 4)
WINDOW = (640, 480)  # width, height of the camera's view of the 768x576 canvas
SWAY_X = (60.0, 3.0)  # amplitude px, period s
SWAY_Y = (40.0, 2.5)
CAMERAS = ("swaying", "still")
OURS = ("ours: annotate --no-camera-motion", "ours: annotate --camera-motion",
        "ours: online", "ours: online --camera-motion")
PEERS = ("roboflow ByteTrack", "roboflow BoT-SORT (CMC, frames)",
         "ultralytics BoT-SORT (GMC, frames)")
COLUMNS = ("HOTA", "IDF1", "AssA", "IDSW")


@dataclass(frozen=True)
class Scene:
    """One camera's view of a rendered scene: truth, detections, the true camera shift."""

    sequence: str
    seed: int
    camera: str
    truth: Truth
    detections: list[Detections]
    shifts: np.ndarray  # (frames, 2): the scene's true motion since the previous frame

    def frames(self) -> Iterator[np.ndarray]:
        """The scene's frames, rendered again (never stored)."""
        offset = window_offsets(len(self.detections))
        for t, (frame, _, _) in enumerate(render(self.sequence, self.seed)):
            if self.camera == "still":
                yield frame
            else:
                x, y = offset[t]
                yield frame[y:y + WINDOW[1], x:x + WINDOW[0]]


def window_offsets(frames: int) -> np.ndarray:
    """(frames, 2) whole-pixel top-left corners of the window on the 768x576 canvas."""
    t = np.arange(frames) / FPS
    x = 64 + SWAY_X[0] * np.sin(2 * np.pi * t / SWAY_X[1])
    y = 48 + SWAY_Y[0] * np.sin(2 * np.pi * t / SWAY_Y[1])
    return np.round(np.stack([x, y], axis=1)).astype(np.int64)


def _windowed(ids: np.ndarray, boxes: np.ndarray, offset: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    moved = boxes - np.tile(offset, 2)
    moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, WINDOW[0])
    moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, WINDOW[1])
    keep = (moved[:, 2] - moved[:, 0] >= 2) & (moved[:, 3] - moved[:, 1] >= 2)
    return ids[keep], moved[keep]


def scene(sequence: str, seed: int, camera: str) -> Scene:
    """The still scene (crossing_scenes' cache) or the swayed one (cached here)."""
    if camera == "still":
        still = crossing_scene(sequence, seed)
        return Scene(sequence, seed, camera, still.truth, still.detections,
                     np.zeros((len(still.detections), 2)))
    cache = _cache_dir() / f"swayed-{sequence}-{seed}-{_swayed_key(sequence, seed)}.npz"
    if not cache.exists():
        _detect_swayed(sequence, seed, cache)
    with np.load(cache) as data:
        bounds = np.cumsum(np.concatenate([[0], data["counts"]]))
        tb = np.cumsum(np.concatenate([[0], data["truth_counts"]]))
        detections = [Detections(data["boxes"][a:b], data["scores"][a:b], data["class_ids"][a:b])
                      for a, b in zip(bounds[:-1], bounds[1:])]
        truth = Truth([data["truth_ids"][a:b] for a, b in zip(tb[:-1], tb[1:])],
                      [data["truth_boxes"][a:b] for a, b in zip(tb[:-1], tb[1:])])
    offsets = window_offsets(len(detections))
    shifts = np.vstack([[0, 0], -np.diff(offsets, axis=0)]).astype(np.float64)
    return Scene(sequence, seed, camera, truth, detections, shifts)


def _swayed_key(sequence: str, seed: int) -> str:
    digest = hashlib.sha256(f"{_key(sequence, seed)}|{VERSION}|{WINDOW}|{SWAY_X}|{SWAY_Y}"
                            .encode())
    return digest.hexdigest()[:16]


def _detect_swayed(sequence: str, seed: int, cache) -> None:
    from common import DETECTOR

    from autotrack.detectors import load_detector

    print(f"rendering {sequence} seed {seed} through a swaying window and running {DETECTOR} "
          f"(cached in {cache}) ...", file=sys.stderr, flush=True)
    use_local_models()
    detector = load_detector(DETECTOR, min_score=DETECT_MIN_SCORE)
    dets, tids, tboxes = [], [], []
    offsets = window_offsets(pasted_truth(sequence).frames)
    for t, (frame, ids, boxes) in enumerate(render(sequence, seed)):
        x, y = offsets[t]
        d = detector.detect(frame[y:y + WINDOW[1], x:x + WINDOW[0]])
        dets.append(d.select(d.class_ids == PERSON))
        ids, boxes = _windowed(ids, boxes, offsets[t])
        tids.append(ids)
        tboxes.append(boxes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.stem + f".{os.getpid()}.tmp.npz")
    np.savez(partial,
             counts=np.array([len(d) for d in dets], dtype=np.int64),
             boxes=np.concatenate([d.boxes for d in dets]).reshape(-1, 4),
             scores=np.concatenate([d.scores for d in dets]),
             class_ids=np.concatenate([d.class_ids for d in dets]),
             truth_counts=np.array([len(i) for i in tids], dtype=np.int64),
             truth_ids=np.concatenate(tids).astype(np.int64),
             truth_boxes=np.concatenate(tboxes).reshape(-1, 4))
    partial.replace(cache)


# ---------------------------------------------------------------------------- trackers
@dataclass(frozen=True)
class Run:
    """A scene at one rate: every ``step``-th frame, renumbered."""

    truth: Truth
    detections: list[Detections]
    frames: list[np.ndarray]
    fps: float


def at_rate(s: Scene, frames: list[np.ndarray], step: int) -> Run:
    return Run(Truth(s.truth.ids[::step], s.truth.boxes[::step]), s.detections[::step],
               frames[::step], FPS / step)


def ours(run: Run, mode: str, camera_motion: bool) -> Outputs:
    """`autotrack annotate`'s tracking on its defaults, through the pipeline's own loop."""
    options = TrackingOptions(camera_motion=camera_motion)
    tracker = options.tracker(run.fps)
    online: Outputs = []
    update = tracker.update

    def record(detections: Detections, **kwargs: object):
        result = update(detections, **kwargs)
        online.append((result.track_ids, result.boxes))
        return result

    tracker.update = record  # type: ignore[method-assign]
    stream = (Detected(t, frame, d)
              for t, (frame, d) in enumerate(zip(run.frames, run.detections)))
    camera = options.camera_motion_estimator()
    tracks, _ = collect_tracks(stream, tracker, camera_motion=camera)
    if mode == "online":
        return online
    tracks, _ = finish_tracks(tracks, refine=options.refine_config(run.fps),
                              smooth=options.smooth,
                              camera_path=camera.path() if camera is not None else None)
    return per_frame(tracks, len(run.detections))


def roboflow_botsort(run: Run) -> Outputs:
    """roboflow BoT-SORT on its defaults, camera-motion compensation on, frames given."""
    import trackers

    tracker = trackers.BoTSORTTracker(frame_rate=run.fps)
    out: Outputs = []
    for d, frame in zip(run.detections, run.frames):
        result = tracker.update(peers.supervision_detections(d), frame=frame)
        confirmed = result.tracker_id >= 0
        out.append((result.tracker_id[confirmed].astype(np.int64),
                    result.xyxy[confirmed].astype(np.float64)))
    return out


def ultralytics_botsort(run: Run) -> Outputs:
    """ultralytics' BOTSORT on its botsort.yaml (GMC: sparse optical flow), frames given."""
    from pathlib import Path

    import ultralytics
    import yaml
    from ultralytics.trackers.bot_sort import BOTSORT

    path = Path(ultralytics.__file__).parent / "cfg" / "trackers" / "botsort.yaml"
    tracker = BOTSORT(SimpleNamespace(**yaml.safe_load(path.read_text())))  # no frame rate
    out: Outputs = []
    for d, frame in zip(run.detections, run.frames):
        result = peers.from_ultralytics(tracker.update(peers.ultralytics_results(d), frame))
        out.append((result.track_ids, result.boxes))
    return out


RUNNERS: dict[str, Callable[[Run], Outputs]] = {
    OURS[0]: lambda r: ours(r, "annotate", False),
    OURS[1]: lambda r: ours(r, "annotate", True),
    OURS[2]: lambda r: ours(r, "online", False),
    OURS[3]: lambda r: ours(r, "online", True),
    PEERS[0]: lambda r: roboflow("roboflow ByteTrack", r),
    PEERS[1]: roboflow_botsort,
    PEERS[2]: ultralytics_botsort,
}


def estimate_errors(s: Scene, frames: list[np.ndarray], step: int
                    ) -> tuple[np.ndarray, float]:
    """|estimated - true| shift per frame pair at this step (px), and ms per frame."""
    camera = CameraMotion()
    estimated = []
    started = time.perf_counter()
    for frame, d in zip(frames[::step], s.detections[::step]):
        estimated.append(camera.shift(frame, d.boxes))
    ms = 1000 * (time.perf_counter() - started) / len(estimated)
    travelled = np.cumsum(s.shifts, axis=0)[::step]
    true = np.vstack([[0, 0], np.diff(travelled, axis=0)])
    return np.hypot(*(np.array(estimated) - true)[1:].T), ms


# ------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs: TUD-Campus seed 0 at 6.25 fps only")
    parser.add_argument("--seeds", type=int, default=3, help="rendered scene seeds (default 3)")
    args = parser.parse_args(argv)
    use_local_models()
    started = time.perf_counter()
    print(header("Tracking through a moving camera: rendered TUD scenes, swaying and still"))
    names, seeds, steps = ((SEQUENCES[:1], 1, STEPS[2:]) if args.quick
                           else (SEQUENCES, args.seeds, STEPS))
    who = (*OURS, *PEERS)
    scores: dict[tuple[str, str, int, str], list[dict[str, float]]] = {}
    errors: dict[tuple[str, int], list[np.ndarray]] = {}
    times: list[float] = []
    for camera in CAMERAS:
        for name in names:
            for seed in range(seeds):
                s = scene(name, seed, camera)
                frames = list(s.frames())
                for step in steps:
                    error, ms = estimate_errors(s, frames, step)
                    errors.setdefault((camera, step), []).append(error)
                    times.append(ms)
                    run = at_rate(s, frames, step)
                    for w in who:
                        scores.setdefault((camera, name, step, w), []).append(
                            tracking_metrics(run.truth, RUNNERS[w](run)))
                del frames

    print("Ours on `autotrack annotate`'s defaults, with `--no-camera-motion` and with "
          "`--camera-motion` (the default); "
          "peers on their defaults (roboflow ByteTrack as quality.py's TUD rows), the BoT-SORTs "
          "with their camera-motion compensation and the frames. HOTA, IDF1, AssA in %, IDSW "
          f"per run; mean over seeds 0..{seeds - 1}. Swaying: a {WINDOW[0]}x{WINDOW[1]} window "
          f"over the 768x576 render, {SWAY_X[0]:g} px over {SWAY_X[1]:g} s sideways, "
          f"{SWAY_Y[0]:g} px over {SWAY_Y[1]:g} s up and down; still: the render unmoved.\n")
    rows = []
    for camera in CAMERAS:
        for step in steps:
            for w in who:
                cells = []
                for name in names:
                    runs = scores[camera, name, step, w]
                    mean = {m: float(np.mean([r[m] for r in runs])) for m in COLUMNS}
                    cells.append(" / ".join(f"{100 * mean[m]:.1f}" if m != "IDSW"
                                            else f"{mean[m]:.1f}" for m in COLUMNS))
                rows.append([camera, f"{FPS / step:g} fps", w, *cells])
    print(markdown_table(["camera", "rate", "tracker",
                          *(f"{n} HOTA / IDF1 / AssA / IDSW" for n in names)], rows,
                         [False, False, False] + [True] * len(names)))
    print("\nThe shift estimate (px between the frames a tracker sees; swaying: |estimated - "
          "true|, still: |estimated|, true 0):\n")
    rows = [[camera, f"{FPS / step:g} fps", f"{np.mean(np.concatenate(e)):.2f}",
             f"{np.max(np.concatenate(e)):.2f}"] for (camera, step), e in errors.items()]
    print(markdown_table(["camera", "rate", "mean px", "max px"], rows,
                         [False, False, True, True]))
    print(f"\nEstimate: {np.median(times):.2f} ms a frame (median over scenes; frames "
          f"{WINDOW[0]}x{WINDOW[1]} and 768x576).")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
