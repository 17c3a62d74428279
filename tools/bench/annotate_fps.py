"""Frames per second of ``autotrack annotate`` on vtest.avi, split by stage.

Run: python tools/bench/annotate_fps.py [--quick] [--repeats R]

Builds what ``autotrack.cli.annotate`` builds, from the CLI's own default options
(YOLOX-Nano on onnxruntime, ByteTrack, cvat-video output), runs ``pipeline.track_video``
(which times decode / detect / track per frame) and times ``write_tracks`` as the output
stage, exactly where the CLI does. Left out, as the CLI leaves them out of its stage times:
model loading (reported apart), the progress bar, and the keyframe summary line.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import header, markdown_table, use_local_models, vtest_video

from autotrack.cli import build_parser
from autotrack.detectors import Detector, class_filter, load_detector
from autotrack.export import write_tracks
from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
from autotrack.pipeline import AnnotationResult, track_video
from autotrack.tracking_options import TrackingOptions
from autotrack.video import FrameSource, VideoInfo

STAGES = ("decode", "detect", "track", "output")
QUICK_FRAMES = 30  # --quick: checks that the script still runs, not a measurement


class FirstFrames:
    """The first ``limit`` frames of a FrameSource (for --quick); same interface."""

    def __init__(self, source: FrameSource, limit: int) -> None:
        self._source = source
        self.info: VideoInfo = source.info
        self._limit = limit

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return itertools.islice(iter(self._source), self._limit)


@dataclass(frozen=True)
class Run:
    seconds: dict[str, float]  # per stage
    frames: int
    tracks: int
    output_bytes: int

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def annotate_once(args: argparse.Namespace, detector: Detector, limit: int | None,
                  folder: Path) -> Run:
    """One ``autotrack annotate`` run, with the CLI's tracker settings and output call."""
    source = FrameSource(args.source)
    frames = source if limit is None else FirstFrames(source, limit)
    options = TrackingOptions.from_args(args)  # as cli.annotate builds the tracker
    tracker = options.tracker(source.info.fps)
    class_ids = class_filter(detector.class_names, None)
    result: AnnotationResult = track_video(frames, detector, tracker,  # type: ignore[arg-type]
                                           class_ids=class_ids, smooth=options.smooth,
                                           refine=options.refine_config(source.info.fps))
    output = folder / Path(args.output).name
    started = time.perf_counter()
    write_tracks(output, "cvat-video", result.tracks, result.class_names,
                 frame_count=result.frames_read, width=result.video.width,
                 height=result.video.height, min_iou=box_keyframe_iou(args))
    result.times.output = time.perf_counter() - started
    return Run({stage: getattr(result.times, stage) for stage in STAGES}, result.frames_read,
               len(result.tracks), output.stat().st_size)


def box_keyframe_iou(args: argparse.Namespace) -> float:
    """``--keyframe-iou`` as ``cli.annotate`` resolves it for boxes. The parser's default is
    None because boxes and masks (``--segmenter``) have different defaults; passing that None
    on to ``write_tracks`` was this script's TypeError in ``thin_keyframes``."""
    return args.keyframe_iou if args.keyframe_iou is not None else DEFAULT_KEYFRAME_IOU


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"check the script runs, no numbers: first {QUICK_FRAMES} frames, "
                             "one run")
    parser.add_argument("--repeats", type=int, help="runs, best total kept (default 5; 1 quick)")
    options = parser.parse_args(argv)
    repeats = options.repeats or (1 if options.quick else 5)
    limit = QUICK_FRAMES if options.quick else None

    use_local_models()
    with tempfile.TemporaryDirectory(prefix="autotrack-bench-") as tmp:
        # The CLI's own parser supplies every default (detector, thresholds, keyframe IoU).
        args = build_parser().parse_args(
            ["annotate", str(vtest_video()), "-o", str(Path(tmp) / "vtest.xml"), "-q"])
        started = time.perf_counter()
        detector = load_detector(args.detector, min_score=args.low_conf, device=args.device)
        load_seconds = time.perf_counter() - started
        runs = [annotate_once(args, detector, limit, Path(tmp)) for _ in range(repeats)]
    best = min(runs, key=lambda run: run.total)

    print(header("`autotrack annotate` frames/s by stage"))
    print(f"`autotrack annotate vtest.avi -o vtest.xml` path with CLI defaults (detector "
          f"{args.detector}, conf {args.conf}, low-conf {args.low_conf}, cvat-video output): "
          f"{best.frames} frames of {vtest_video().name}, "
          f"{'one run' if repeats == 1 else f'the run with the best total of {repeats}'}; "
          f"{best.tracks} tracks, "
          f"{best.output_bytes / 1024:.0f} KiB XML. Model load (not counted): "
          f"{load_seconds:.2f} s. Totals of all runs: "
          f"{', '.join(f'{run.total:.1f} s' for run in runs)}.\n")
    rows = [[stage, f"{best.seconds[stage]:.2f}", f"{best.seconds[stage] / best.frames * 1e3:.2f}",
             _fps(best.frames, best.seconds[stage]), f"{best.seconds[stage] / best.total:.1%}"]
            for stage in STAGES]
    rows.append(["**overall**", f"{best.total:.2f}", f"{best.total / best.frames * 1e3:.2f}",
                 _fps(best.frames, best.total), "100.0%"])
    print(markdown_table(["stage", "seconds", "ms/frame", "frames/s", "% of time"], rows))


def _fps(frames: int, seconds: float) -> str:
    return f"{frames / seconds:,.0f}" if seconds > 0 else "inf"


if __name__ == "__main__":
    main()
