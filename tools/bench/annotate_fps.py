"""Frames per second of ``autotrack annotate`` on vtest.avi: the sequential pipeline beside
the overlapped default and the fast settings, by stage, in one process.

Run: python tools/bench/annotate_fps.py [--quick] [--repeats R] [--device cuda] [--rss]

Builds what ``autotrack.cli.annotate`` builds, from the CLI's own default options
(YOLOX-Nano on onnxruntime, ByteTrack, cvat-video output), runs ``pipeline.track_video``
and times ``write_tracks`` as the output stage, exactly where the CLI does. Each mode is a
set of ``autotrack annotate`` options; the modes run in turn, round after round (A, B, C, A,
B, C, ...), so a noisy stretch of a shared machine slows all of them, and the best total of
each is kept. ``sequential`` is the pipeline before issue 17 (``--sequential``: read,
detect, track one frame after another, onnxruntime's default threads): the ratios are
against it. The default's tracks are compared with the sequential ones exactly. Every mode
also reports its tracking time (all offline steps included) against the detector's busy
time, and the camera-shift estimate's busy time (``--camera-motion``: on a thread of its
own beside the detector, so not in the tracking time; with ``--sequential`` on the
tracker's thread, so in it); ``--modes camera,no-camera`` runs the default with
``--camera-motion`` and with ``--no-camera-motion`` in the same rounds.

``--device cuda`` times the GPU modes (YOLOX on onnxruntime's CUDA provider, one frame and
``--batch 8`` per call; ultralytics yolo11n, randomly initialised so nothing is downloaded,
speed only) beside the CPU sequential baseline. ``--rss`` runs the default pipeline on 100
and on 1,000 frames (vtest.avi read again from the start after its 795), each in a fresh
process, and prints the peak resident memory of each. Model loading is not timed; the
int8 model is built into a temporary folder when the models folders lack it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import header, markdown_table, use_local_models, vtest_video

from autotrack.cli import build_parser
from autotrack.detect_every import tracker_frame_rate
from autotrack.detectors import Detector, load_detector
from autotrack.export import write_tracks
from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
from autotrack.pipeline import AnnotationResult, track_video
from autotrack.speed import SpeedOptions
from autotrack.tracking_options import TrackingOptions
from autotrack.tracks import Track
from autotrack.video import FrameSource, VideoInfo

STAGES = ("decode", "detect", "camera", "track", "output")
QUICK_FRAMES = 30  # --quick: checks that the script still runs, not a measurement
INT8 = "yolox-nano-int8"


@dataclass(frozen=True)
class Mode:
    key: str  # for --modes
    name: str
    options: tuple[str, ...]  # autotrack annotate options, as a user types them


CPU_MODES = (
    Mode("sequential", "sequential (before issue 17)", ("--sequential",)),
    Mode("default", "default (overlapped)", ()),
    Mode("every2", "--detect-every 2", ("--detect-every", "2")),
    Mode("int8", "int8", ("--detector", INT8)),
    Mode("int8-every2", "int8 + --detect-every 2", ("--detector", INT8, "--detect-every", "2")),
    Mode("camera", "--camera-motion", ("--camera-motion",)),
    Mode("no-camera", "--no-camera-motion", ("--no-camera-motion",)),
)
GPU_MODES = (
    Mode("sequential", "sequential (before issue 17), CPU", ("--sequential",)),
    Mode("cuda-1", "YOLOX cuda, 1 frame a call", ("--device", "cuda", "--batch", "1")),
    Mode("cuda-8", "YOLOX cuda, --batch 8", ("--device", "cuda")),
    Mode("cuda-8-every2", "YOLOX cuda, --batch 8, --detect-every 2",
         ("--device", "cuda", "--detect-every", "2")),
    Mode("yolo11n-1", "ultralytics yolo11n cuda, 1 frame a call",
         ("--device", "cuda", "--detector", "yolo11n.yaml", "--batch", "1")),
    Mode("yolo11n-8", "ultralytics yolo11n cuda, --batch 8",
         ("--device", "cuda", "--detector", "yolo11n.yaml")),
)


class FirstFrames:
    """The first ``limit`` frames of a video (vtest.avi read again from its start as often
    as needed); the interface track_video reads."""

    def __init__(self, path: Path, limit: int) -> None:
        self._path = path
        self.info: VideoInfo = FrameSource(path).info
        self._limit = limit

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        again = (frame for _ in itertools.count() for _, frame in FrameSource(self._path))
        return enumerate(itertools.islice(again, self._limit))


@dataclass(frozen=True)
class Run:
    seconds: dict[str, float]  # per stage, busy time (the stages overlap unless sequential)
    wall: float  # the whole run, output included
    cpu: float  # CPU seconds of the process (all its threads), output included
    frames: int
    tracks: list[Track]
    output_bytes: int


def annotate_once(args: argparse.Namespace, detector: Detector, limit: int | None,
                  folder: Path) -> Run:
    """One ``autotrack annotate`` run, with the CLI's tracker settings and output call."""
    speed = SpeedOptions.from_args(args)
    cpu_before = _cpu_seconds()
    source = FrameSource(args.source)
    frames = source if limit is None else FirstFrames(source.path, limit)
    options = TrackingOptions.from_args(args)  # as cli.annotate builds the tracker
    tracker = options.tracker(tracker_frame_rate(source.info.fps, speed.detect_every,
                                                 options.tracker_name))
    result: AnnotationResult = track_video(frames, detector, tracker,  # type: ignore[arg-type]
                                           smooth=options.smooth, speed=speed,
                                           refine=options.refine_config(source.info.fps),
                                           camera_motion=options.camera_motion_estimator())
    output = folder / Path(args.output).name
    started = time.perf_counter()
    write_tracks(output, "cvat-video", result.tracks, result.class_names,
                 frame_count=result.frames_read, width=result.video.width,
                 height=result.video.height, min_iou=box_keyframe_iou(args))
    result.times.output = time.perf_counter() - started
    return Run({stage: getattr(result.times, stage) for stage in STAGES},
               result.seconds + result.times.output, _cpu_seconds() - cpu_before,
               result.frames_read, result.tracks, output.stat().st_size)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def box_keyframe_iou(args: argparse.Namespace) -> float:
    """``--keyframe-iou`` as ``cli.annotate`` resolves it for boxes. The parser's default is
    None because boxes and masks (``--segmenter``) have different defaults; passing that None
    on to ``write_tracks`` was this script's TypeError in ``thin_keyframes``."""
    return args.keyframe_iou if args.keyframe_iou is not None else DEFAULT_KEYFRAME_IOU


def mode_args(mode: Mode, folder: Path) -> argparse.Namespace:
    """The CLI's own parser supplies every default (detector, thresholds, keyframe IoU)."""
    return build_parser().parse_args(["annotate", str(vtest_video()), "-o",
                                      str(folder / "vtest.xml"), "-q", *mode.options])


def mode_detector(args: argparse.Namespace) -> Detector:
    speed = SpeedOptions.from_args(args)
    return load_detector(args.detector, min_score=args.low_conf, device=args.device,
                         threads=speed.session_threads, batch=speed.frames_per_call)


def ensure_int8(folder: Path) -> None:
    """The int8 model from the models folders, or built into ``folder`` (added to them)."""
    from autotrack.errors import ModelNotFoundError
    from autotrack.models import resolve_model

    try:
        resolve_model(INT8)
        return
    except ModelNotFoundError:
        pass
    from autotrack.detectors.quantize import calibration_frames, quantize_yolox
    from autotrack.models import BUILT

    print(f"building {INT8} into {folder} (tools/quantize_yolox.py does it for good) ...",
          file=sys.stderr, flush=True)
    quantize_yolox(resolve_model("yolox-nano"), calibration_frames(vtest_video()),
                   folder / BUILT[INT8].filename)
    os.environ["AUTOTRACK_MODELS"] += os.pathsep + str(folder)


def same_tracks(a: list[Track], b: list[Track]) -> bool:
    return len(a) == len(b) and all(
        x.track_id == y.track_id and x.class_id == y.class_id
        and np.array_equal(x.frames, y.frames) and np.array_equal(x.boxes, y.boxes)
        for x, y in zip(a, b))


def peak_rss(frames: int) -> float:
    """MiB of peak resident memory of a fresh process annotating ``frames`` frames."""
    run = subprocess.run([sys.executable, __file__, "--rss-child", str(frames)],
                         capture_output=True, text=True, check=True)
    return float(run.stdout.split()[-1])


def rss_child(frames: int) -> None:
    with tempfile.TemporaryDirectory(prefix="autotrack-bench-") as tmp:
        args = mode_args(CPU_MODES[1], Path(tmp))
        run = annotate_once(args, mode_detector(args), frames, Path(tmp))
    assert run.frames == frames
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"check the script runs, no numbers: first {QUICK_FRAMES} frames, "
                             "one run")
    parser.add_argument("--repeats", type=int, help="rounds, best total kept (default 5; 1 quick)")
    parser.add_argument("--device", help="cuda or cuda:N: the GPU modes (default: CPU modes)")
    parser.add_argument("--rss", action="store_true",
                        help="also peak RSS of the default pipeline on 100 and 1,000 frames")
    parser.add_argument("--modes", help="comma-separated mode keys to run (the first two of "
                        "the list always run): " + ", ".join(m.key for m in CPU_MODES + GPU_MODES))
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    use_local_models()
    if options.rss_child:
        rss_child(options.rss_child)
        return
    repeats = options.repeats or (1 if options.quick else 5)
    limit = QUICK_FRAMES if options.quick else None
    modes = GPU_MODES if options.device else CPU_MODES
    if options.modes:
        wanted = set(options.modes.split(","))
        modes = modes[:2] + tuple(m for m in modes[2:] if m.key in wanted)
    if options.device and options.device != "cuda":
        modes = tuple(Mode(m.key, m.name, tuple(options.device if o == "cuda" else o
                                                for o in m.options)) for m in modes)

    with tempfile.TemporaryDirectory(prefix="autotrack-bench-") as tmp:
        folder = Path(tmp)
        if any(INT8 in m.options for m in modes):
            ensure_int8(folder)
        prepared = []
        for mode in modes:
            args = mode_args(mode, folder)
            started = time.perf_counter()
            detector = mode_detector(args)
            prepared.append((mode, args, detector, time.perf_counter() - started))
        runs: dict[str, list[Run]] = {mode.name: [] for mode in modes}
        for _ in range(repeats):
            for mode, args, detector, _ in prepared:
                runs[mode.name].append(annotate_once(args, detector, limit, folder))
    best = {name: min(done, key=lambda run: run.wall) for name, done in runs.items()}
    baseline = best[modes[0].name]
    default = best[modes[1].name]

    print(header(f"`autotrack annotate` frames/s, {'GPU' if options.device else 'CPU'} "
                 "modes beside the sequential pipeline"))
    print(f"{baseline.frames} frames of {vtest_video().name}, CLI defaults otherwise "
          f"(conf {prepared[0][1].conf}, low-conf {prepared[0][1].low_conf}, cvat-video "
          f"output), {os.cpu_count()} CPUs; "
          f"{'one round' if repeats == 1 else f'the best of {repeats} interleaved rounds'} "
          "per mode, wall time including the XML output, model loading not counted. "
          f"Tracks of `{modes[1].name}` identical to the sequential ones: "
          f"{'yes' if same_tracks(baseline.tracks, default.tracks) else 'NO'}.\n")
    rows = []
    for mode, _, _, load in prepared:
        run = best[mode.name]
        rows.append([mode.name, " ".join(mode.options) or "(none)", _fps(run.frames, run.wall),
                     f"{baseline.wall / run.wall:.2f}x", len(run.tracks),
                     ", ".join(f"{r.wall:.1f}" for r in runs[mode.name]),
                     ", ".join(f"{r.cpu:.1f}" for r in runs[mode.name]), f"{load:.2f}"])
    print(markdown_table(["mode", "options", "frames/s", "vs sequential", "tracks",
                          "wall s (each round)", "CPU s (each round)", "load s"], rows,
                         [False, False, True, True, True, False, False, True]))
    print("\nTracking (every offline step included) against the detector's busy time, per "
          "mode (issue 16's bound: under 10%), in the round kept; the camera-shift estimate "
          "beside them (its own thread; 0 where off or, with --sequential, in the tracking "
          "time):\n")
    print(markdown_table(
        ["mode", "track s", "detect s", "track / detect", "camera s", "camera ms/frame",
         "camera / detect"],
        [[mode.name, f"{run.seconds['track']:.2f}", f"{run.seconds['detect']:.2f}",
          f"{run.seconds['track'] / run.seconds['detect']:.1%}",
          f"{run.seconds['camera']:.2f}", f"{run.seconds['camera'] / run.frames * 1e3:.2f}",
          f"{run.seconds['camera'] / run.seconds['detect']:.1%}"]
         for mode, *_ in prepared for run in [best[mode.name]]],
        [False, True, True, True, True, True, True]))
    names = {mode.key: mode.name for mode in modes}
    if "camera" in names and "no-camera" in names:
        pairs = [on.wall / off.wall for on, off in zip(runs[names["camera"]],
                                                       runs[names["no-camera"]])]
        cpu = [on.cpu / off.cpu for on, off in zip(runs[names["camera"]],
                                                   runs[names["no-camera"]])]
        print(f"\nWall time with `--camera-motion` over without, round by round (the two run "
              f"next to each other in every round): {', '.join(f'{p:.3f}' for p in pairs)}; "
              f"median {np.median(pairs):.3f}, best against best "
              f"{best[names['camera']].wall / best[names['no-camera']].wall:.3f}. The "
              f"process's CPU time (all threads; what an idle machine's wall time follows "
              f"where the detector keeps every core busy), on over off: "
              f"{', '.join(f'{p:.3f}' for p in cpu)}; median {np.median(cpu):.3f}.")
    print(f"\nBy stage, `{modes[1].name}` (busy time of each stage's threads; they overlap, "
          "so the shares add up to more than 100%):\n")
    print(markdown_table(
        ["stage", "busy s", "ms/frame", "frames/s (alone)", "% of wall"],
        [[stage, f"{default.seconds[stage]:.2f}",
          f"{default.seconds[stage] / default.frames * 1e3:.2f}",
          _fps(default.frames, default.seconds[stage]),
          f"{default.seconds[stage] / default.wall:.1%}"]
         for stage in STAGES] + [["**overall**", f"{default.wall:.2f}",
                                  f"{default.wall / default.frames * 1e3:.2f}",
                                  _fps(default.frames, default.wall), "100.0%"]]))
    if options.rss:
        small, large = peak_rss(100), peak_rss(1000)
        print(f"\nPeak RSS of the default pipeline, each in a fresh process: 100 frames "
              f"{small:.0f} MiB, 1,000 frames {large:.0f} MiB ({large / small - 1:+.1%}).")


def _fps(frames: int, seconds: float) -> str:
    return f"{frames / seconds:,.0f}" if seconds > 0 else "inf"


if __name__ == "__main__":
    main()
