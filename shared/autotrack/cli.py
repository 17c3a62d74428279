"""``autotrack``: command-line entry point.

Every error a user can cause or fix (a bad path, an unknown class, a missing model) is one
line on stderr and exit status 2; only genuine bugs show a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from autotrack.errors import AutotrackError, InputError

_SUFFIX_FORMATS = {".xml": "cvat-video", ".txt": "mot", ".json": "json"}


def build_parser() -> argparse.ArgumentParser:
    from autotrack.detectors import DEFAULT_DETECTOR
    from autotrack.export import EXPORT_FORMATS
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
    from autotrack.tracking_options import add_tracking_arguments, fraction

    parser = argparse.ArgumentParser(
        prog="autotrack", description="Video tracking models as CVAT annotations.")
    commands = parser.add_subparsers(dest="command", required=True)
    annotate = commands.add_parser(
        "annotate", help="detect and track objects in a video; write CVAT tracks",
        description="Detect and track every object in a video or frame folder and write "
                    "tracks with few keyframes (CVAT interpolates between them).")
    annotate.add_argument("source", help="video file or folder of frames")
    annotate.add_argument("-o", "--output", required=True,
                          help="output file (.xml CVAT for video 1.1, .txt MOTChallenge, .json)")
    annotate.add_argument("--format", choices=EXPORT_FORMATS,
                          help="output format (default: from the output's suffix)")
    annotate.add_argument("--detector", default=DEFAULT_DETECTOR,
                          help=f"model name or file (default: {DEFAULT_DETECTOR}; also e.g. "
                               "yolo11n.pt, rtdetr-l.pt with the [ultralytics] extra)")
    annotate.add_argument("--classes", help="comma-separated class names to keep, e.g. person,car")
    add_tracking_arguments(annotate)
    annotate.add_argument("--keyframe-iou", type=fraction, default=DEFAULT_KEYFRAME_IOU,
                          help="keep a keyframe where CVAT's interpolation would fall below this "
                               f"IoU with the tracker's box (default {DEFAULT_KEYFRAME_IOU})")
    annotate.add_argument("--device", help="detector device, e.g. cpu, cuda:0")
    annotate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from autotrack.evaluate.cli import add_eval_parser

    add_eval_parser(commands)
    return parser


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.output).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise InputError(f"cannot tell the format from {args.output!r}; pass --format")
    return _SUFFIX_FORMATS[suffix]


def annotate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autotrack.detectors import class_filter, load_detector
    from autotrack.export import write_tracks
    from autotrack.keyframes import keyframe_stats
    from autotrack.pipeline import track_video
    from autotrack.tracking_options import TrackingOptions
    from autotrack.video import FrameSource

    fmt = _output_format(args)
    options = TrackingOptions.from_args(args)
    output = Path(args.output)
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")
    source = FrameSource(args.source)
    detector = load_detector(args.detector, min_score=options.low_conf, device=args.device)
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    class_ids = class_filter(detector.class_names, classes)
    tracker = options.tracker(source.info.fps, device=args.device)
    with tqdm(total=source.info.frame_count, unit="frame", disable=args.quiet or None,
              desc=Path(args.source).name, file=sys.stderr) as bar:
        result = track_video(source, detector, tracker, class_ids=class_ids,
                             on_frame=lambda _: bar.update(), smooth=options.smooth,
                             refine=options.refine_config(source.info.fps))
    if result.frames_read == 0:
        raise InputError(f"{args.source}: no frames could be decoded")
    started = time.perf_counter()
    info = result.video
    write_tracks(output, fmt, result.tracks, result.class_names, frame_count=result.frames_read,
                 width=info.width, height=info.height, min_iou=args.keyframe_iou)
    result.times.output = time.perf_counter() - started
    stats = keyframe_stats(result.tracks, min_iou=args.keyframe_iou,
                           last_frame=result.frames_read - 1)
    if result.refinement is not None:
        refined = result.refinement
        filled = sum(int(mask.sum()) for mask in refined.interpolated.values())
        print(f"refine: {len(refined.links)} of {len(refined.decisions)} candidate links joined, "
              f"{filled} frames filled", file=sys.stderr)
    fps = result.times.fps(result.frames_read)
    print(f"wrote {output} ({fmt}): {len(result.tracks)} tracks over {result.frames_read} "
          f"frames; {stats}", file=sys.stderr)
    print("frames/s by stage: " + ", ".join(f"{k} {v:.0f}" for k, v in fps.items()),
          file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "annotate":
            return annotate(args)
        if args.command == "eval":
            from autotrack.evaluate.cli import run_eval

            return run_eval(args)
        parser.error(f"unknown command {args.command}")
    except AutotrackError as exc:
        print(f"autotrack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotrack: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
