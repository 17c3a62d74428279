"""CVAT for video 1.1 XML: tracks as thinned keyframes, importable by CVAT and datumaro.

The layout follows what CVAT itself exports for an interpolation-mode task, so the file
can be uploaded with "Upload annotations -> CVAT 1.1" onto a task made from the video.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from typing import BinaryIO, TextIO

from autotrack.geometry import clip_boxes
from autotrack.keyframes import DEFAULT_KEYFRAME_IOU, Keyframe, thin_keyframes
from autotrack.tracks import Track

# Distinct, readable colours, picked by class index so a label keeps its colour across runs.
_PALETTE = (
    "#fa3253", "#3d3df5", "#34d1b7", "#ff6a4d", "#b83df5", "#24b353", "#fafa37", "#ff007c",
    "#33ddff", "#b25050", "#8c78f0", "#f59331", "#83e070", "#cc9933", "#5986b3", "#aaf0d1",
)


def label_color(class_id: int) -> str:
    """The ``#rrggbb`` colour given to a class in the task's label list."""
    return _PALETTE[class_id % len(_PALETTE)]


def used_class_ids(tracks: Sequence[Track], class_names: Sequence[str]) -> list[int]:
    """Classes some track uses, ascending; rejects ids ``class_names`` cannot name."""
    ids = sorted({t.class_id for t in tracks if len(t.frames)})
    bad = [c for c in ids if not 0 <= c < len(class_names)]
    if bad:
        raise ValueError(f"class ids {bad} have no name among {len(class_names)} class names")
    return ids


def _coord(value: float) -> str:
    return f"{value + 0.0:.2f}"  # + 0.0 turns a clipped -0.0 into 0.0


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _meta(
    root: ET.Element, label_names: Sequence[tuple[int, str]], *, task_name: str,
    frame_count: int, width: int, height: int, dumped: str,
) -> None:
    meta = _sub(root, "meta")
    task = _sub(meta, "task")
    for tag, text in (
        ("id", "0"), ("name", task_name), ("size", str(frame_count)), ("mode", "interpolation"),
        ("overlap", "0"), ("start_frame", "0"), ("stop_frame", str(max(frame_count - 1, 0))),
    ):
        _sub(task, tag, text)
    labels = _sub(task, "labels")
    for class_id, name in label_names:
        label = _sub(labels, "label")
        _sub(label, "name", name)
        _sub(label, "color", label_color(class_id))
        _sub(label, "type", "rectangle")
        _sub(label, "attributes")
    size = _sub(task, "original_size")
    _sub(size, "width", str(width))
    _sub(size, "height", str(height))
    _sub(meta, "dumped", dumped)


def _track_element(
    root: ET.Element, output_id: int, label: str, keyframes: Sequence[Keyframe], source: str
) -> None:
    track = ET.SubElement(root, "track", {"id": str(output_id), "label": label, "source": source})
    for k in keyframes:
        x1, y1, x2, y2 = k.box
        ET.SubElement(track, "box", {
            "frame": str(k.frame), "keyframe": "1", "outside": str(int(k.outside)),
            "occluded": str(int(k.occluded)), "xtl": _coord(x1), "ytl": _coord(y1),
            "xbr": _coord(x2), "ybr": _coord(y2), "z_order": "0",
        })


def cvat_video_xml(
    tracks: Sequence[Track], class_names: Sequence[str], *, frame_count: int, width: int,
    height: int, task_name: str = "autotrack", min_iou: float = DEFAULT_KEYFRAME_IOU,
    source: str = "auto",
    dumped: str = "",
) -> bytes:
    """The CVAT for video 1.1 document for ``tracks`` as UTF-8 bytes.

    Boxes are clipped to the image before thinning, so the interpolation guarantee holds
    for what CVAT will show. Track ids become 0..n-1 in the order given (tracks with no
    frames are skipped). ``dumped`` is the export timestamp CVAT writes; empty by default
    so the same tracks always give the same bytes.
    """
    if frame_count <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"bad video geometry: {frame_count} frames of {width}x{height}")
    class_ids = used_class_ids(tracks, class_names)
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    _meta(
        root, [(c, class_names[c]) for c in class_ids], task_name=task_name,
        frame_count=frame_count, width=width, height=height, dumped=dumped,
    )
    output_id = 0
    for track in tracks:
        if not len(track.frames):
            continue
        clipped = replace(track, boxes=clip_boxes(track.boxes, width, height))
        keyframes = thin_keyframes(clipped, min_iou, last_frame=frame_count - 1)
        _track_element(root, output_id, class_names[track.class_id], keyframes, source)
        output_id += 1
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_cvat_video(
    path_or_file: str | os.PathLike[str] | BinaryIO | TextIO,
    tracks: Sequence[Track],
    class_names: Sequence[str],
    *,
    frame_count: int,
    width: int,
    height: int,
    task_name: str = "autotrack",
    min_iou: float = DEFAULT_KEYFRAME_IOU,
    source: str = "auto",
    dumped: str = "",
) -> None:
    """Write :func:`cvat_video_xml` to a path or an open (binary or text) file."""
    data = cvat_video_xml(
        tracks, class_names, frame_count=frame_count, width=width, height=height,
        task_name=task_name, min_iou=min_iou, source=source, dumped=dumped,
    )
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as f:
            f.write(data)
    elif isinstance(path_or_file, io.TextIOBase):
        path_or_file.write(data.decode("utf-8"))
    else:
        path_or_file.write(data)
