"""``autotrack task annotate --segmenter``: pixel masks in a CVAT task, prompted by the task.

The door for video tasks that ``cvat-cli task auto-annotate`` refuses: SAM2 or XMem follow
the objects a person drew on one frame of the task (``--prompts-from-frame F``: rectangles,
polygons or masks, see :func:`autotrack.cvat.task.segment.prompts_from_task`) from that frame
on; SAM3 finds and follows every object named by ``--text``. The result is written as
``annotate --segmenter`` writes it, per-frame masks grouped by object (CVAT has no mask
tracks) or, with ``--polygons``, polygon tracks; then job by job like every run of
``task annotate`` (backup first, read back, ``--replace``, ``restore``).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from autotrack.errors import InputError

SEGMENTERS = ("sam2", "xmem", "sam3")
_MASK_ONLY = ("prompts_from_frame", "text", "checkpoint", "image_size", "polygons")


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    masks = parser.add_argument_group(
        "pixel masks", "follow objects with a video segmenter instead of detecting boxes")
    masks.add_argument("--segmenter", choices=SEGMENTERS,
                       help="sam2 or xmem (objects drawn on --prompts-from-frame; xmem needs "
                            "polygons or masks), sam3 (objects found from --text)")
    masks.add_argument("--prompts-from-frame", type=int, metavar="FRAME",
                       help="task frame on which a person drew one rectangle, polygon or mask "
                            "per object to follow (from that frame on)")
    masks.add_argument("--text", metavar="NAMES",
                       help="sam3: comma-separated task labels to find and follow, e.g. car,person")
    from autotrack.vos.factory import add_segmenter_arguments

    add_segmenter_arguments(masks)


def check_segment_options(args: argparse.Namespace) -> None:
    """Refuse option mixes that cannot work, before anything touches the network."""
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
    from autotrack.vos.mask_tracks import DEFAULT_MASK_KEYFRAME_IOU

    if args.keyframe_iou is None:
        args.keyframe_iou = DEFAULT_MASK_KEYFRAME_IOU if args.segmenter else DEFAULT_KEYFRAME_IOU
    if not args.segmenter:
        used = [f"--{name.replace('_', '-')}" for name in _MASK_ONLY
                if getattr(args, name) not in (None, False)]
        if used:
            raise InputError(f"{', '.join(used)} go with --segmenter sam2, xmem or sam3")
        return
    if args.segmenter == "sam3":
        if not (args.text or "").strip(","):
            raise InputError("--segmenter sam3 needs --text, e.g. --text car,person")
        if args.prompts_from_frame is not None:
            raise InputError("--segmenter sam3 finds its objects from --text; "
                             "--prompts-from-frame is for sam2 and xmem")
    else:
        if args.text:
            raise InputError(f"--text is for --segmenter sam3; {args.segmenter} follows the "
                             "objects drawn on --prompts-from-frame")
        if args.prompts_from_frame is None:
            raise InputError(f"--segmenter {args.segmenter} needs --prompts-from-frame FRAME: "
                             "the task frame with one shape drawn per object to follow")
        if args.prompts_from_frame < 0:
            raise InputError("--prompts-from-frame: frame numbers start at 0")


def segment_for_task(run: Any, args: argparse.Namespace, out: TextIO,
                     err: TextIO) -> dict[str, list[dict[str, Any]]]:
    """Segment the run's frames; returns CVAT JSON ``{"tracks", "shapes"}`` for the task."""
    from tqdm import tqdm

    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.cvat.task.frames import TaskFrames
    from autotrack.cvat.task.segment import (
        next_group,
        prompts_from_task,
        segment_task_frames,
        segmentation_to_cvat,
        task_label_ids,
    )
    from autotrack.vos.factory import build_segmenter

    target, frames = run.target, run.frames
    annotations = get_annotations(run.server, target.kind, target.id)
    texts = [t.strip() for t in (args.text or "").split(",") if t.strip()]
    prompts = None
    if args.segmenter == "sam3":
        names = texts
    else:
        first = args.prompts_from_frame
        if first not in frames:
            raise InputError(f"--prompts-from-frame {first} is not among the frames to process "
                             f"({frames[0]}-{frames[-1]} of {target})")
        frames = [f for f in frames if f >= first]  # the segmenters run forward
        prompts = prompts_from_task(annotations, first, run.labels, width=target.width,
                                    height=target.height, where=str(target),
                                    masks_only=args.segmenter == "xmem")
        names = sorted({entry.label for entry in prompts.entries})
    label_ids = task_label_ids(names, run.labels, where=str(target),
                               shape_type="polygon" if args.polygons else "mask")
    segmenter = build_segmenter(args.segmenter, texts, checkpoint=args.checkpoint,
                                device=args.device, image_size=args.image_size)
    source = TaskFrames(run.server, target, frames,
                        warn=lambda message: print(f"warning: {message}", file=err))
    with tqdm(total=len(frames), unit="frame", disable=args.quiet or None,
              desc=f"{target.kind} {target.id}", file=err) as bar:
        result = segment_task_frames(source, segmenter, prompts, width=target.width,
                                     height=target.height, min_iou=args.keyframe_iou,
                                     on_frame=lambda _: bar.update())
    end = frames[-1] + 1 if frames[-1] < target.last_frame else None
    payload = segmentation_to_cvat(result, label_ids, polygons=args.polygons, end_frame=end,
                                   first_group=next_group(annotations))
    written = (f"{len(payload['tracks'])} polygon tracks" if args.polygons
               else f"{len(payload['shapes'])} mask shapes")
    verb = "would upload" if args.dry_run else "to upload"
    print(f"{args.segmenter}: {len(result.tracks)} objects over {result.frames_read} frames "
          f"({frames[0]}-{frames[-1]}); {verb}: {written}; {result.keyframes}", file=out)
    return {"tracks": payload.get("tracks") or [], "shapes": payload.get("shapes") or []}
