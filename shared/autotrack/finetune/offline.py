"""``autotrack export``: an Ultralytics dataset from CVAT for video 1.1 XML and its video.

The offline door of the dataset step: no server and no ``cvat`` extra. The XML is read as
CVAT's importer reads it (:mod:`autotrack.finetune.xml_tracks`) and the whole task counts as
reviewed (an XML file does not say which jobs people finished). Frames come from the video
(or a folder of frames): the chosen ones are decoded, the others only skipped over.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
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


def video_frames(path: str | Path, frames: Sequence[int], offset: int = 0
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame, image)`` for ``frames`` (ascending) of a video file or frame folder; frame
    ``f`` is the source's frame ``offset + f``. InputError where one cannot be decoded."""
    path = Path(path)
    source = FrameSource(path)  # checks that it exists and is readable
    if path.is_dir():
        wanted = {offset + f: f for f in frames}
        for index, image in source:
            if index in wanted:
                yield wanted.pop(index), image
            if not wanted:
                return
        if wanted:
            raise InputError(f"{path}: frame {min(wanted.values())} is not there (the folder "
                             f"holds {source.info.frame_count} frames)")
        return
    capture = cv2.VideoCapture(str(path))
    try:
        position = 0
        for frame in frames:
            while position < offset + frame:
                if not capture.grab():
                    raise InputError(f"{path}: frame {frame} cannot be decoded (the video ends "
                                     f"after {position} frames)")
                position += 1
            ok, image = capture.read()
            if not ok or image is None:
                raise InputError(f"{path}: frame {frame} cannot be decoded (the video ends "
                                 f"after {position} frames)")
            position += 1
            yield frame, image
    finally:
        capture.release()


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "video"


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autotrack.finetune.xml_tracks import read_cvat_xml

    options = DatasetOptions.from_args(args)
    xml = read_cvat_xml(args.annotations)
    video = FrameSource(args.video)
    info = video.info
    if xml.width and xml.height and (xml.width, xml.height) != (info.width, info.height):
        raise InputError(f"{args.annotations} is for {xml.width}x{xml.height} frames, but "
                         f"{args.video} has {info.width}x{info.height} frames")
    size = xml.size if xml.size is not None else info.frame_count - xml.start_frame
    if size < 1:
        raise InputError(f"{args.annotations}: the task has no frames")
    names = class_names([xml.labels], options.classes)
    source = Source(name=Path(args.annotations).name, key=_key(Path(args.video).stem),
                    labels=xml.label_names(),
                    pieces=[Piece(Path(args.annotations).name, 0, size - 1, xml.annotations)],
                    about={"annotations": str(Path(args.annotations).resolve()),
                           "video": str(Path(args.video).resolve()),
                           "start_frame": xml.start_frame})
    reader = {source.key: lambda frames: video_frames(args.video, frames, xml.start_frame)}
    with tqdm(unit="frame", disable=args.quiet or None, desc="export", file=sys.stderr) as bar:
        result = build_dataset([source], reader, names, options, args.output,
                               on_frame=bar.update)
    print(result.summary(), file=sys.stderr)
    return 0
