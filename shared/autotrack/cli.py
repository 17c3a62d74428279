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
SEGMENTERS = ("sam2", "xmem", "sam3")


def build_parser() -> argparse.ArgumentParser:
    from autotrack.detectors import DEFAULT_DETECTOR
    from autotrack.export import EXPORT_FORMATS
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
    from autotrack.speed import add_speed_arguments
    from autotrack.tracking_options import add_tracking_arguments, fraction
    from autotrack.vos.mask_tracks import DEFAULT_MASK_KEYFRAME_IOU

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
    annotate.add_argument("--keyframe-iou", type=fraction, default=None,
                          help="keep a keyframe where CVAT's interpolation would fall below this "
                               f"IoU with the tracker's box (default {DEFAULT_KEYFRAME_IOU}); "
                               "with --segmenter, where the mask moved below this IoU from the "
                               f"last kept one (default {DEFAULT_MASK_KEYFRAME_IOU})")
    annotate.add_argument("--device", help="model device, e.g. cpu, cuda:0")
    speed = annotate.add_argument_group(
        "speed", "how the detector uses the machine; the tracks are the same whatever these "
                 "are, except --detect-every")
    add_speed_arguments(speed)
    masks = annotate.add_argument_group(
        "pixel masks", "follow prompted objects with a video segmenter instead of detecting "
                       "boxes: writes CVAT masks (or polygon tracks) to an .xml file")
    masks.add_argument("--segmenter", choices=SEGMENTERS,
                       help="sam2 or xmem (objects from --prompts; xmem needs mask prompts), "
                            "sam3 (objects found from --text)")
    masks.add_argument("--prompts", metavar="FILE",
                       help="JSON prompt file: id, label, frame and a box, clicks or a mask per "
                            "object (see autotrack.vos.prompts)")
    masks.add_argument("--text", metavar="NAMES",
                       help="sam3: comma-separated concepts to find and follow, e.g. car,person "
                            "(they become the CVAT labels)")
    from autotrack.vos.factory import add_segmenter_arguments

    add_segmenter_arguments(masks)
    annotate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from autotrack.evaluate.cli import add_eval_parser

    add_eval_parser(commands)
    from autotrack.cvat.task.commands import add_server_arguments, add_task_parser

    add_task_parser(commands)
    from autotrack.merge.command import add_merge_parser

    add_merge_parser(commands)
    from autotrack.finetune.offline import add_export_parser

    add_export_parser(commands)
    from autotrack.finetune.command import add_finetune_parser
    from autotrack.models_command import add_models_parser

    add_server_arguments(add_finetune_parser(commands))
    add_models_parser(commands)
    return parser


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.output).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise InputError(f"cannot tell the format from {args.output!r}; pass --format")
    return _SUFFIX_FORMATS[suffix]


def annotate(args: argparse.Namespace) -> int:
    if args.segmenter or args.prompts or args.text:
        return annotate_masks(args)
    from tqdm import tqdm

    from autotrack.detect_every import tracker_frame_rate
    from autotrack.detectors import check_device, class_filter, load_detector
    from autotrack.export import write_tracks
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU, keyframe_stats
    from autotrack.pipeline import track_video
    from autotrack.speed import SpeedOptions
    from autotrack.tracking_options import TrackingOptions
    from autotrack.video import FrameSource

    fmt = _output_format(args)
    # --keyframe-iou defaults differ for boxes and masks, so the parser leaves it None
    min_iou = args.keyframe_iou if args.keyframe_iou is not None else DEFAULT_KEYFRAME_IOU
    options = TrackingOptions.from_args(args)
    speed = SpeedOptions.from_args(args)
    output = Path(args.output)
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")
    source = FrameSource(args.source)
    detector = load_detector(args.detector, min_score=options.low_conf, device=args.device,
                             threads=speed.session_threads, batch=speed.frames_per_call)
    check_device(detector, args.device)
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    class_ids = class_filter(detector.class_names, classes)
    rate = tracker_frame_rate(source.info.fps, speed.detect_every, options.tracker_name)
    tracker = options.tracker(rate, device=args.device)
    with tqdm(total=source.info.frame_count, unit="frame", disable=args.quiet or None,
              desc=Path(args.source).name, file=sys.stderr) as bar:
        result = track_video(source, detector, tracker, class_ids=class_ids,
                             on_frame=lambda _: bar.update(), smooth=options.smooth,
                             refine=options.refine_config(source.info.fps), speed=speed,
                             camera_motion=options.camera_motion_estimator())
    if result.frames_read == 0:
        raise InputError(f"{args.source}: no frames could be decoded")
    shortfall = source.shortfall(result.frames_read)
    if shortfall:
        print(shortfall, file=sys.stderr)
    started = time.perf_counter()
    info = result.video
    write_tracks(output, fmt, result.tracks, result.class_names, frame_count=result.frames_read,
                 width=info.width, height=info.height, min_iou=min_iou)
    result.times.output = time.perf_counter() - started
    stats = keyframe_stats(result.tracks, min_iou=min_iou, last_frame=result.frames_read - 1)
    if result.refinement is not None:
        refined = result.refinement
        filled = sum(int(mask.sum()) for mask in refined.interpolated.values())
        print(f"refine: {len(refined.links)} of {len(refined.decisions)} candidate links joined, "
              f"{filled} frames filled", file=sys.stderr)
    fps = result.times.fps(result.frames_read)
    covered = (f" (frames 0-{result.frames_read - 1} of the {source.declared_frames} the "
               "header announces)" if shortfall else "")
    print(f"wrote {output} ({fmt}): {len(result.tracks)} tracks over {result.frames_read} "
          f"frames{covered}; {stats}", file=sys.stderr)
    wall = result.seconds + result.times.output
    overall = result.frames_read / wall if wall > 0 else float("inf")
    print("frames/s by stage: " + ", ".join(f"{k} {v:.0f}" for k, v in fps.items())
          + f"; overall {overall:.0f} ({speed.describe()})", file=sys.stderr)
    return 0


def _build_segmenter(args: argparse.Namespace, texts: list[str]):
    """The chosen segmenter on official weights (:func:`autotrack.vos.factory.build_segmenter`)."""
    from autotrack.vos.factory import build_segmenter

    return build_segmenter(args.segmenter, texts, checkpoint=args.checkpoint,
                           device=args.device, image_size=args.image_size)


def annotate_masks(args: argparse.Namespace) -> int:
    """``annotate --segmenter``: prompted objects followed as pixel masks (see
    :mod:`autotrack.vos.offline`)."""
    from tqdm import tqdm

    from autotrack.export.cvat_video import write_mask_tracks
    from autotrack.video import FrameSource
    from autotrack.vos.mask_tracks import DEFAULT_MASK_KEYFRAME_IOU
    from autotrack.vos.offline import check_video_prompts, segment_video
    from autotrack.vos.prompts import load_prompts

    if not args.segmenter:
        raise InputError("--prompts and --text need --segmenter sam2, xmem or sam3")
    if (args.format or "cvat-video") != "cvat-video" or Path(args.output).suffix.lower() != ".xml":
        raise InputError("masks are written as CVAT XML: give an -o file ending in .xml")
    output = Path(args.output)
    if not output.parent.exists():
        raise InputError(f"{output.parent}: output folder does not exist")
    texts = [t.strip() for t in (args.text or "").split(",") if t.strip()]
    if args.segmenter == "sam3":
        if not texts:
            raise InputError("--segmenter sam3 needs --text, e.g. --text car,person")
        if args.prompts:
            raise InputError("--segmenter sam3 finds its objects from --text; --prompts is for "
                             "sam2 and xmem")
    elif args.text:
        raise InputError(f"--text is for --segmenter sam3; {args.segmenter} follows --prompts")
    elif not args.prompts:
        raise InputError(f"--segmenter {args.segmenter} needs --prompts FILE")
    prompts = load_prompts(args.prompts) if args.prompts else None
    source = FrameSource(args.source)
    checked = None  # the prompts are checked once, here, before the model loads
    if prompts is not None:
        checked = check_video_prompts(source, prompts, no_clicks_only=args.segmenter == "xmem")
    min_iou = args.keyframe_iou if args.keyframe_iou is not None else DEFAULT_MASK_KEYFRAME_IOU
    segmenter = _build_segmenter(args, texts)
    with tqdm(total=source.info.frame_count, unit="frame", disable=args.quiet or None,
              desc=Path(args.source).name, file=sys.stderr) as bar:
        result = segment_video(source, segmenter, prompts, min_iou=min_iou,
                               on_frame=lambda _: bar.update(), checked_size=checked)
    shortfall = source.shortfall(result.frames_read)
    if shortfall:
        print(shortfall, file=sys.stderr)
    write_mask_tracks(output, result.tracks, frame_count=result.frames_read,
                      width=result.width, height=result.height, polygons=args.polygons,
                      task_name=output.stem)
    shape = "polygon tracks" if args.polygons else "per-frame masks"
    covered = (f" (frames 0-{result.frames_read - 1} of the {source.declared_frames} the "
               "header announces)" if shortfall else "")
    print(f"wrote {output} ({shape}): {len(result.tracks)} objects over {result.frames_read} "
          f"frames{covered}; {result.keyframes}", file=sys.stderr)
    print(f"{args.segmenter}: {result.seconds_per_frame:.2f} s/frame; at most "
          f"{result.peak_memory.frames_kept} frames kept", file=sys.stderr)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    """``autotrack finetune``, lent the doors it runs through (it imports none itself)."""
    from autotrack.cvat.deploy.nuclio import main as deploy_nuclio
    from autotrack.finetune.command import Doors, run_finetune

    def run_command(argv: list[str]) -> int:
        parser = build_parser()
        try:
            inner = parser.parse_args(argv)
        except SystemExit as exc:
            raise InputError(f"autotrack {' '.join(argv[:2])} refused its options (above)"
                             ) from exc
        return _run(parser, inner)

    return run_finetune(args, sys.stdout, sys.stderr, Doors(run_command, deploy_nuclio))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "annotate":
        return annotate(args)
    if args.command == "eval":
        from autotrack.evaluate.cli import run_eval

        return run_eval(args)
    if args.command == "task":
        from autotrack.cvat.task.commands import run_task

        return run_task(args, sys.stdout, sys.stderr)
    if args.command == "merge":
        from autotrack.merge.command import run_merge_file

        return run_merge_file(args, sys.stdout, sys.stderr)
    if args.command == "export":
        from autotrack.finetune.offline import run_export

        return run_export(args)
    if args.command == "finetune":
        return _finetune(args)
    if args.command == "models":
        from autotrack.models_command import run_models

        return run_models(args, sys.stdout, sys.stderr)
    parser.error(f"unknown command {args.command}")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except AutotrackError as exc:
        print(f"autotrack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotrack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
