"""CVAT for video 1.1 XML (and CVAT for images 1.1) read into CVAT's JSON form.

What CVAT's importer makes of the file (``cvat/apps/dataset_manager/formats/cvat.py``,
``load_anno``), so that :mod:`autotrack.finetune.dataset` sees the same tracks and shapes a
task holds after the upload, and interpolates them with the same code:

* a ``<track label>`` becomes a track of its ``keyframe="1"`` shapes (a shape without the
  attribute counts as a keyframe; ``keyframe="0"`` rows are the interpolated frames CVAT
  writes on export, and CVAT drops them on import), each with ``frame``, ``outside``,
  ``occluded``, ``rotation`` and its points: ``<box xtl ytl xbr ybr>``, ``<polygon points>``
  and ``<mask left top width height>`` (the runs are not decoded: only the mask's box is
  used). A track whose first shape is a mask becomes that one shape, as in CVAT (it has no
  mask tracks). Other shapes (ellipses, polylines, points, cuboids, skeletons) keep their
  type and are left out later (counted);
* a shape inside ``<image id>`` is a standalone shape on frame ``id``; ``<tag>`` is a tag.

``<meta>`` gives the labels (in their order), the task's size, its first video frame
(``start_frame``: XML frame ``f`` is video frame ``start_frame + f``) and frame size. Tasks
with a frame filter other than ``step=1`` are refused; so are files that declare entities
(CVAT parses with ``defusedxml``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotrack.errors import InputError
from autotrack.evaluate.sequences import cvat_root, meta_unit

SHAPE_TYPES = {"box": "rectangle", "polygon": "polygon", "polyline": "polyline",
               "points": "points", "ellipse": "ellipse", "mask": "mask", "cuboid": "cuboid",
               "skeleton": "skeleton"}


@dataclass
class XmlAnnotations:
    labels: list[tuple[str, str]]  # (name, type) in the file's order
    annotations: dict[str, list[dict[str, Any]]]  # CVAT's JSON form; label ids index labels
    size: int | None = None  # frames in the task, where <meta> says
    start_frame: int = 0
    width: int | None = None
    height: int | None = None
    name: str = ""
    label_ids: dict[str, int] = field(default_factory=dict)

    def label_names(self) -> dict[int, str]:
        return {i: name for name, i in self.label_ids.items()}


def _number(el: ET.Element, key: str, source: str, kind: type = float) -> Any:
    value = el.get(key)
    if value is None:
        raise InputError(f"{source}: <{el.tag}> lacks the {key!r} attribute")
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{source}: <{el.tag} {key}={value!r}> is not a number") from None


def _points(el: ET.Element, source: str) -> list[float]:
    if el.tag == "box":
        return [_number(el, k, source) for k in ("xtl", "ytl", "xbr", "ybr")]
    if el.tag == "mask":
        left, top = _number(el, "left", source, int), _number(el, "top", source, int)
        width, height = _number(el, "width", source, int), _number(el, "height", source, int)
        return [left, top, left + width - 1, top + height - 1]
    text = el.get("points") or ""
    try:
        return [float(v) for pair in text.split(";") if pair for v in pair.split(",")]
    except ValueError:
        raise InputError(f"{source}: <{el.tag} points={text[:40]!r}> is malformed") from None


def _shape(el: ET.Element, source: str) -> dict[str, Any]:
    kind = SHAPE_TYPES[el.tag]
    shape = {"type": kind, "frame": _number(el, "frame", source, int) if el.get("frame")
             is not None else None, "outside": el.get("outside", "0") == "1",
             "occluded": el.get("occluded", "0") == "1",
             "rotation": float(el.get("rotation", "0") or 0.0),
             "points": [] if kind in ("skeleton", "cuboid") else _points(el, source)}
    return shape


def _meta(root: ET.Element, result: XmlAnnotations, source: str) -> None:
    unit = meta_unit(root, source)
    if unit is None:
        return
    result.name = (unit.findtext("name") or "").strip()
    try:
        size = (unit.findtext("size") or "").strip()
        result.size = int(size) if size else None
        result.start_frame = int((unit.findtext("start_frame") or "0").strip() or 0)
        width = (unit.findtext("original_size/width") or "").strip()
        height = (unit.findtext("original_size/height") or "").strip()
        if width and height:
            result.width, result.height = int(width), int(height)
    except ValueError:
        raise InputError(f"{source}: <meta> has a number that is not a whole number") from None
    for label in unit.findall("labels/label") or root.findall("meta/project/labels/label"):
        name = (label.findtext("name") or "").strip()
        if name and name not in result.label_ids:
            result.label_ids[name] = len(result.labels) + 1
            result.labels.append((name, (label.findtext("type") or "any").strip() or "any"))


def _label_id(result: XmlAnnotations, name: str | None, source: str, tag: str) -> int:
    if not name:
        raise InputError(f"{source}: a <{tag}> has no label")
    if name not in result.label_ids:  # not in <meta>: a label of its own, type any
        result.label_ids[name] = len(result.labels) + 1
        result.labels.append((name, "any"))
    return result.label_ids[name]


def read_cvat_xml(path: str | Path) -> XmlAnnotations:
    """The tracks, shapes and labels of a CVAT 1.1 XML file (module docstring)."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: {exc.strerror or exc}") from None
    if b"<!ENTITY" in data:
        raise InputError(f"{source}: the file declares XML entities; CVAT refuses those too")
    root = cvat_root(data, source)
    result = XmlAnnotations(labels=[], annotations={"tracks": [], "shapes": [], "tags": []})
    _meta(root, result, source)
    out = result.annotations
    for number, track in enumerate(root.findall("track")):
        label = _label_id(result, track.get("label"), source, "track")
        shapes = [_shape(el, source) for el in track if el.tag in SHAPE_TYPES
                  and el.get("keyframe", "1") == "1"]
        if not shapes:
            continue
        if any(s["frame"] is None for s in shapes):
            raise InputError(f"{source}: a shape of track {track.get('id', number)} has no "
                             "frame")
        shapes.sort(key=lambda s: s["frame"])
        if shapes[0]["type"] == "mask":
            out["shapes"].append({**shapes[0], "label_id": label})
            continue
        out["tracks"].append({"id": number, "label_id": label, "frame": shapes[0]["frame"],
                              "shapes": shapes})
    for image in root.findall("image"):
        frame = _number(image, "id", source, int)
        for el in image:
            if el.tag == "tag":
                out["tags"].append({"frame": frame, "label_id": _label_id(
                    result, el.get("label"), source, "tag")})
            elif el.tag in SHAPE_TYPES:
                out["shapes"].append({**_shape(el, source), "frame": frame,
                                      "label_id": _label_id(result, el.get("label"), source,
                                                            el.tag)})
    return result
