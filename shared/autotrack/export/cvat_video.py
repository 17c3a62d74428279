"""CVAT for video 1.1 XML: tracks as thinned keyframes, as CVAT's importer reads them.

The layout follows what CVAT itself exports for an interpolation-mode task, so the file
can be uploaded with "Upload annotations -> CVAT 1.1" onto a task made from the video.

Mask tracks (:class:`~autotrack.vos.mask_tracks.MaskTrack`) are written one of two ways,
because **CVAT has no mask tracks**: its XML importer turns a ``<track>`` of ``<mask>``
shapes into a single shape on the track's first keyframe and drops the rest
(``cvat/apps/dataset_manager/formats/cvat.py``, ``load_anno``), its track interpolation
raises ``NotImplementedError`` for masks (``annotation.py``). So:

* masks (default): one ``<mask rle left top width height>`` shape per object and frame, in
  ``<image id name="frame_%06d">`` elements (what CVAT reads as per-frame shapes, in
  either "CVAT 1.1" upload), with ``group_id`` naming the object: CVAT keeps it as the
  shape's group, ``autotrack eval`` joins an object's shapes by it. The run lengths are
  CVAT's own: background first, row by row over the ``width`` x ``height`` box whose
  top-left pixel is (``left``, ``top``), written ``"r0, r1, ..."`` as CVAT writes them.
* polygons (``polygons=True``): real CVAT polygon tracks (identity kept, editable as a
  track), the outline of each keyframe's largest part. A polygon keyframe is written only
  where the mask track has one; because CVAT interpolates polygons between keyframes
  (``polyshape_interpolation``) instead of holding them, the previous polygon is repeated
  as a keyframe on the frame before each change (and carried by ``outside`` keyframes),
  and CVAT's interpolation between two identical polygons is that polygon, so CVAT shows
  exactly the held outline.
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
    frame_count: int, width: int, height: int, dumped: str, label_type: str = "rectangle",
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
        _sub(label, "type", label_type)
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
    write_bytes(path_or_file, data)


# ------------------------------------------------------------------------------ masks
def _mask_attrs(rle) -> dict[str, str]:
    """CVAT's ``<mask>`` attributes from our RLE (runs + inclusive x1, y1, x2, y2)."""
    runs, (x1, y1, x2, y2) = rle[:-4], rle[-4:]
    return {"rle": ", ".join(str(int(r)) for r in runs), "left": str(int(x1)),
            "top": str(int(y1)), "width": str(int(x2 - x1 + 1)), "height": str(int(y2 - y1 + 1))}


def _mask_images(root: ET.Element, tracks, group_of: dict[int, int], frame_count: int,
                 width: int, height: int, source: str) -> None:
    shown: dict[int, list[dict[str, str]]] = {}
    for track in tracks:
        for first, stop, keyframe in track.spans():
            if keyframe.outside or first >= frame_count:
                continue
            # one attribute dict per keyframe, shared by every frame it covers
            attrs = {"label": track.label, "source": source, "occluded": "0",
                     **_mask_attrs(keyframe.rle), "z_order": "0",
                     "group_id": str(group_of[track.object_id])}
            for frame in range(first, min(stop, frame_count)):
                shown.setdefault(frame, []).append(attrs)
    for frame in sorted(shown):
        image = ET.SubElement(root, "image", {
            "id": str(frame), "name": f"frame_{frame:06d}", "width": str(width),
            "height": str(height)})
        for attrs in shown[frame]:
            ET.SubElement(image, "mask", attrs)


def _points_text(points) -> str:
    return ";".join(f"{_coord(x)},{_coord(y)}" for x, y in points)


def _polygon_track(root: ET.Element, output_id: int, track, frame_count: int, source: str,
                   tolerance: float) -> int:
    """One polygon ``<track>`` (module docstring); returns its visible keyframes."""
    from autotrack.vos.mask_tracks import polygon_keyframes

    shapes = [(frame, _points_text(zip(flat[0::2], flat[1::2])), outside)
              for frame, flat, outside in polygon_keyframes(track, frame_count, tolerance)]
    # a keyframe that only holds the previous outline up to a change is not a new one
    visible_keyframes = sum(1 for k, (_, points, outside) in enumerate(shapes)
                            if not outside and (k == 0 or shapes[k - 1][2]
                                                or shapes[k - 1][1] != points))
    if not shapes:
        return 0
    element = ET.SubElement(root, "track", {
        "id": str(output_id), "label": track.label, "source": source})
    for frame, points, outside in shapes:
        ET.SubElement(element, "polygon", {
            "frame": str(frame), "keyframe": "1", "outside": str(int(outside)),
            "occluded": "0", "points": points, "z_order": "0"})
    return visible_keyframes


def mask_tracks_xml(
    tracks, *, frame_count: int, width: int, height: int, polygons: bool = False,
    task_name: str = "autotrack", source: str = "auto", dumped: str = "",
    polygon_tolerance: float = 1.0,
) -> bytes:
    """The CVAT 1.1 document for mask tracks (see the module docstring for the layout):
    per-frame ``<mask>`` shapes grouped by object, or with ``polygons`` polygon tracks
    whose outlines are simplified to ``polygon_tolerance`` pixels."""
    if frame_count <= 0 or width <= 0 or height <= 0:
        raise ValueError(f"bad video geometry: {frame_count} frames of {width}x{height}")
    for track in tracks:
        if (track.height, track.width) != (height, width):
            raise ValueError(f"object {track.object_id}: masks are {track.width}x"
                             f"{track.height} on a {width}x{height} video")
    labels = list(dict.fromkeys(t.label for t in tracks))
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    _meta(root, list(enumerate(labels)), task_name=task_name, frame_count=frame_count,
          width=width, height=height, dumped=dumped,
          label_type="polygon" if polygons else "mask")
    kept = [t for t in tracks if any(not k.outside for k in t.keyframes)]
    if polygons:
        output_id = 0
        for track in kept:
            if _polygon_track(root, output_id, track, frame_count, source, polygon_tolerance):
                output_id += 1
    else:
        group_of = {t.object_id: k + 1 for k, t in enumerate(kept)}
        _mask_images(root, kept, group_of, frame_count, width, height, source)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_mask_tracks(path_or_file, tracks, **kwargs) -> None:
    """Write :func:`mask_tracks_xml` to a path or an open (binary or text) file."""
    data = mask_tracks_xml(tracks, **kwargs)
    write_bytes(path_or_file, data)


def write_bytes(path_or_file, data: bytes) -> None:
    """UTF-8 XML bytes to a path, a binary file or a text file."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as f:
            f.write(data)
    elif isinstance(path_or_file, io.TextIOBase):
        path_or_file.write(data.decode("utf-8"))
    else:
        path_or_file.write(data)
