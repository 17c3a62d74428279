"""``autotrack export``: an Ultralytics dataset from CVAT for video 1.1 XML and its video.

The offline door of the dataset step: no server and no ``cvat`` extra. The XML is read as
CVAT's importer reads it (:func:`autotrack.cvat_xml.read_cvat_xml`, the reader ``autotrack
merge`` uses; :meth:`~autotrack.cvat_xml.CvatXml.annotations` is what a task holds after
the upload) and the whole task counts as reviewed (an XML file does not say which jobs people
finished). XML frame ``f`` is the video's frame ``start_frame + f`` (``<meta>``), so a frame
filter or a project of several tasks is refused (:func:`autotrack.cvat_xml.meta_unit`).
Frames come from the video (or a folder of frames) through
:meth:`autotrack.video.FrameSource.frames_at`: the chosen ones are decoded, the others only
skipped over, and one the video does not have is an error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotrack.errors import InputError
from autotrack.finetune.dataset import (
    DatasetOptions,
    Piece,
    Source,
    add_dataset_arguments,
    build_dataset,
    class_names,
)
from autotrack.video import FrameSource


def add_export_parser(commands: Any) -> argparse.ArgumentParser:
    """``autotrack export`` on the top-level subparsers ``commands``."""
    parser = commands.add_parser(
        "export", help="CVAT XML and its video -> an Ultralytics dataset (no server)",
        description="Write an Ultralytics dataset (data.yaml, images/, labels/, "
                    "manifest.json) from CVAT for video 1.1 XML and the video it annotates: "
                    "tracks expanded to per-frame boxes as CVAT interpolates them, every "
                    "keyframe plus a stride of frames, near-duplicates dropped, a train/val "
                    "split by blocks of time. 'autotrack task export' does the same from "
                    "tasks on a server.")
    parser.add_argument("--annotations", required=True, metavar="XML",
                        help="CVAT for video 1.1 (or CVAT for images 1.1) XML file")
    parser.add_argument("--video", required=True, metavar="VIDEO",
                        help="the video the XML annotates (or a folder of its frames)")
    add_dataset_arguments(parser)
    return parser


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "video"


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autotrack.cvat_xml import meta_unit, read_cvat_xml

    options = DatasetOptions.from_args(args)
    xml = read_cvat_xml(args.annotations)
    meta_unit(xml.root, str(args.annotations))  # XML frames must be the video's frames
    video = FrameSource(args.video)
    info = video.info
    if xml.width and xml.height and (xml.width, xml.height) != (info.width, info.height):
        raise InputError(f"{args.annotations} is for {xml.width}x{xml.height} frames, but "
                         f"{args.video} has {info.width}x{info.height} frames")
    start = xml.start_frame
    size = xml.frame_count if xml.frame_count is not None else info.frame_count - start
    if size < 1:
        raise InputError(f"{args.annotations}: the task has no frames")
    names = class_names([xml.label_list()], options.classes)
    source = Source(name=Path(args.annotations).name, key=_key(Path(args.video).stem),
                    labels=xml.labels,
                    pieces=[Piece(Path(args.annotations).name, 0, size - 1, xml.annotations())],
                    about={"annotations": str(Path(args.annotations).resolve()),
                           "video": str(Path(args.video).resolve()), "start_frame": start})

    def read(frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index, image in video.frames_at([start + f for f in frames], strict=True):
            yield index - start, image

    with tqdm(unit="frame", disable=args.quiet or None, desc="export", file=sys.stderr) as bar:
        result = build_dataset([source], {source.key: read}, names, options, args.output,
                               on_frame=bar.update)
    print(result.summary(), file=sys.stderr)
    return 0
