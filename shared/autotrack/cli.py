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

TRACKERS = ("bytetrack",)
_SUFFIX_FORMATS = {".xml": "cvat-video", ".txt": "mot", ".json": "json"}


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must lie in (0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    from autotrack.detectors import DEFAULT_DETECTOR
    from autotrack.export import EXPORT_FORMATS
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU

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
    annotate.add_argument("--tracker", choices=TRACKERS, default="bytetrack")
    annotate.add_argument("--classes", help="comma-separated class names to keep, e.g. person,car")
    annotate.add_argument("--conf", type=_fraction, default=0.5,
                          help="score a detection needs to be matched first and to start a track "
                               "(lower ones down to --low-conf still extend tracks; default 0.5)")
    annotate.add_argument("--low-conf", type=_fraction, default=0.1,
                          help="lowest score a detection may have to be used at all (default 0.1)")
    annotate.add_argument("--keyframe-iou", type=_fraction, default=DEFAULT_KEYFRAME_IOU,
                          help="keep a keyframe where CVAT's interpolation would fall below this "
                               f"IoU with the tracker's box (default {DEFAULT_KEYFRAME_IOU})")
    annotate.add_argument("--track-buffer", type=int, default=30,
                          help="frames (at 30 fps) a lost object is remembered (default 30)")
    annotate.add_argument("--boxes", choices=("kalman", "detection"), default="kalman",
                          help="box written per frame: the tracker's Kalman estimate (smooth, "
                               "few keyframes; default) or the matched detection (as the "
                               "detector saw it, jittery)")
    annotate.add_argument("--device", help="detector device, e.g. cpu, cuda:0")
    annotate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
    from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig
    from autotrack.video import FrameSource

    fmt = _output_format(args)
    if args.low_conf > args.conf:
        raise InputError(f"--low-conf {args.low_conf} is above --conf {args.conf}")
    if args.track_buffer < 0:
        raise InputError("--track-buffer must not be negative")
    output = Path(args.output)
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")
    source = FrameSource(args.source)
    detector = load_detector(args.detector, min_score=args.low_conf, device=args.device)
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    class_ids = class_filter(detector.class_names, classes)
    tracker = ByteTrack(ByteTrackConfig(
        track_high_thresh=args.conf,
        track_low_thresh=args.low_conf,
        new_track_thresh=min(args.conf + 0.1, 1.0),  # ByteTrack's det_thresh
        track_buffer=args.track_buffer,
        frame_rate=source.info.fps,
        report_detection_boxes=args.boxes == "detection",
    ))
    with tqdm(total=source.info.frame_count, unit="frame", disable=args.quiet or None,
              desc=Path(args.source).name, file=sys.stderr) as bar:
        result = track_video(source, detector, tracker, class_ids=class_ids,
                             on_frame=lambda _: bar.update())
    if result.frames_read == 0:
        raise InputError(f"{args.source}: no frames could be decoded")
    started = time.perf_counter()
    info = result.video
    write_tracks(output, fmt, result.tracks, result.class_names, frame_count=result.frames_read,
                 width=info.width, height=info.height, min_iou=args.keyframe_iou)
    result.times.output = time.perf_counter() - started
    stats = keyframe_stats(result.tracks, min_iou=args.keyframe_iou,
                           last_frame=result.frames_read - 1)
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
