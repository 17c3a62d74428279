"""A model of CVAT's "CVAT 1.1" XML importer, for tests: what CVAT makes of the XML we write.

Like ``tests/cvat_server.py`` for CVAT's REST server, it follows CVAT's source (cvat-ai/cvat,
read at the commits named; CVAT is not run) and refuses what CVAT refuses or fails on:

* ``cvat/apps/dataset_manager/formats/cvat.py`` (a01a8a8f) ``load_anno``, the upload of a plain
  XML. It reads no ``<meta>``: labels and frames are the task's. A ``<track label group_id>``
  holds ``<box xtl ytl xbr ybr>``, ``<polygon|polyline|points points="x,y;...">``, ``<ellipse
  cx cy rx ry>`` or ``<mask rle left top width height>`` shapes with ``frame`` and ``keyframe``
  (required), ``outside``/``occluded`` (``"1"`` or not, default 0), ``z_order`` (``int()``),
  ``rotation`` and coordinates (``float()``), mask runs and box (``int()``); a shape whose
  ``keyframe`` is not ``"1"`` is dropped; a track whose first shape is a mask becomes that one
  shape (group 0): CVAT has no mask tracks. ``<image id name>`` holds the same shapes with
  ``label`` and ``group_id``, and ``<tag label>``. Every object's source becomes ``"file"``;
  the XML's track ``id`` and ``source`` are ignored. A missing attribute (``KeyError``), a bad
  number (``ValueError``), a track without keyframes (``IndexError`` on ``track.shapes[0]``),
  a shape outside any track or image (``TypeError``) fail the upload.
* ``cvat/apps/dataset_manager/bindings.py`` (da710184): ``match_dm_item`` gives an image its
  frame (its name without extension if that is a task frame's name, ``frame_%06d`` in a
  video; else its ``id`` as a frame index; else, in a video, the number after ``frame_``);
  ``CommonData._import_shape`` / ``_import_track`` / ``_import_tag`` check the label
  (``_get_label_id``) and every frame (``rel_frame_id``), keep only attributes the label
  defines (a track's immutable ones go to the track, from its last keyframe; mutable ones stay
  on the shapes), and ``_import_attribute`` wants ``true``/``false`` for a checkbox.
* ``cvat/apps/dataset_manager/formats/transformations.py`` (03501ddb)
  ``MaskConverter.cvat_rle_to_dm_rle``, how CVAT reads a mask: the runs (background first)
  over the ``left..right`` x ``top..bottom`` box row by row, decoded by pycocotools as the COCO
  RLE of the transposed box, pasted on the full frame. CVAT stores any runs on upload and fails
  or shows garbage when it decodes them; this model decodes at once and refuses runs that do
  not cover the box exactly and boxes outside the frame.

The task is the one the file's ``<meta>`` describes unless one is given. Files declaring
entities are refused (CVAT parses with ``defusedxml``). Simplified: frame step 1 (no
``frame_filter``); cuboids and skeletons are refused as not modelled.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CvatImportError(ValueError):
    """CVAT refuses the upload, fails on it, or stores what it cannot decode later."""


@dataclass(frozen=True)
class Attribute:
    mutable: bool
    input_type: str
    default: str = ""


@dataclass(frozen=True)
class Label:
    name: str
    type: str = "any"
    attributes: dict[str, Attribute] = field(default_factory=dict)


@dataclass
class Task:
    labels: list[Label]
    size: int
    width: int | None = None
    height: int | None = None
    start_frame: int = 0
    mode: str = "interpolation"
    name: str = ""

    def label(self, name: str) -> Label:  # InstanceLabelData._get_label_id
        for label in self.labels:
            if label.name == name:
                return label
        raise CvatImportError(f"Label {name!r} is not registered for this task")

    def check_frame(self, frame: int) -> int:  # CommonData.rel_frame_id
        if not 0 <= frame - self.start_frame < self.size:
            raise CvatImportError(f"Unknown frame {frame}")
        return frame


@dataclass
class Shape:
    type: str  # rectangle, polygon, polyline, points, ellipse, mask
    frame: int
    points: list[float]  # masks: runs + [left, top, right, bottom], as CVAT stores them
    label: str | None = None  # per-frame shapes; a track's shapes take the track's
    occluded: bool = False
    outside: bool = False
    keyframe: bool = True
    z_order: int = 0
    rotation: float = 0.0
    group: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = "file"
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass
class Track:
    label: str
    shapes: list[Shape]
    group: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = "file"

    @property
    def frame(self) -> int:  # _import_track: the first shape's frame
        return min(s.frame for s in self.shapes)


@dataclass
class CvatImport:
    task: Task
    tracks: list[Track]
    shapes: list[Shape]
    tags: list[tuple[int, str, int]]  # (frame, label, group)

    def shapes_at(self, frame: int) -> list[Shape]:
        return [s for s in self.shapes if s.frame == frame]


def decode_mask(points, height: int, width: int) -> np.ndarray:
    """The full-frame bool mask of a CVAT mask shape (``MaskConverter.cvat_rle_to_dm_rle``)."""
    from pycocotools import mask as mask_utils

    left, top, right, bottom = (int(v) for v in points[-4:])
    h, w, runs = bottom - top + 1, right - left + 1, [int(v) for v in points[:-4]]
    if not (0 <= left <= right < width and 0 <= top <= bottom < height):
        raise CvatImportError(f"mask box {left},{top},{right},{bottom} is not inside the "
                              f"{width}x{height} frame: CVAT's paste on the frame fails or wraps")
    if min(runs) < 0 or sum(runs) != w * h:
        raise CvatImportError(f"mask runs sum to {sum(runs)}, its {w}x{h} box has {w * h} "
                              "pixels: CVAT's decode fails or reads memory past them")
    rle = mask_utils.frPyObjects([{"counts": runs, "size": [w, h]}], h=h, w=w)[0]
    full = np.zeros((height, width), dtype=bool)
    with warnings.catch_warnings():  # pycocotools 2.0 under numpy 2 warns on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        full[top:bottom + 1, left:right + 1] = mask_utils.decode(rle).transpose()
    return full


def _get(el: ET.Element, key: str) -> str:
    if key not in el.attrib:
        raise CvatImportError(f"<{el.tag}> has no {key!r}: load_anno fails (KeyError)")
    return el.attrib[key]


def _num(parse, text: str, what: str):
    try:
        return parse(text)
    except ValueError:
        raise CvatImportError(f"{what}={text!r}: load_anno's {parse.__name__}() fails") from None


def _points(el: ET.Element) -> list[float]:
    def floats(*keys):
        return [_num(float, _get(el, k), k) for k in keys]

    if el.tag == "box":
        return floats("xtl", "ytl", "xbr", "ybr")
    if el.tag == "ellipse":
        cx, cy, rx, ry = floats("cx", "cy", "rx", "ry")
        return [cx, cy, float(f"{cx + rx:.2f}"), float(f"{cy - ry:.2f}")]
    if el.tag == "mask":
        runs = [_num(int, r, "rle") for r in _get(el, "rle").split(",")]
        left, top, w, h = (_num(int, _get(el, k), k) for k in ("left", "top", "width", "height"))
        return runs + [left, top, left + w - 1, top + h - 1]
    return [_num(float, v, "points") for pair in _get(el, "points").split(";")
            for v in pair.split(",")]


_SHAPES = ("box", "polygon", "polyline", "points", "ellipse", "mask")
_ALL_SHAPES = _SHAPES + ("cuboid", "skeleton")  # load_anno's supported_shapes


def _shape(el: ET.Element, frame: int, **extra) -> Shape:
    if el.tag in ("cuboid", "skeleton"):
        raise NotImplementedError(f"<{el.tag}> is not modelled")
    attributes = [(_get(a, "name"), a.text or "") for a in el.iter("attribute")]
    return Shape(
        type="rectangle" if el.tag == "box" else el.tag, frame=frame, points=_points(el),
        occluded=el.get("occluded", "0") == "1", z_order=_num(int, el.get("z_order", "0"),
        "z_order"), rotation=_num(float, el.get("rotation", "0"), "rotation"),
        attributes=attributes, **extra)


def _attributes(label: Label, pairs, mutable: bool | None) -> dict[str, str]:
    """``_import_attribute`` on the attributes ``label`` defines (of that mutability)."""
    kept = {}
    for name, value in pairs:
        spec = label.attributes.get(name)
        if spec is None or (mutable is not None and spec.mutable != mutable):
            continue
        if spec.input_type == "checkbox" and value != spec.default:
            value = value.lower()
            if value not in ("true", "false"):
                raise CvatImportError(f"Failed to convert attribute '{label.name}'='{value}'")
        kept[name] = value
    return kept


def meta_task(root: ET.Element) -> Task:
    """The task a file's ``<meta>`` describes (as CVAT writes it: ``<task>`` or ``<job>``)."""
    meta = root.find("meta/task")
    meta = root.find("meta/job") if meta is None else meta
    if meta is None:
        raise CvatImportError("no <meta><task>: say which task the file is uploaded to")
    labels = [Label(lab.findtext("name"), lab.findtext("type") or "any", {
        a.findtext("name"): Attribute(a.findtext("mutable") == "True",
                                      a.findtext("input_type") or "text",
                                      a.findtext("default_value") or "")
        for a in lab.iterfind("attributes/attribute")}) for lab in meta.iterfind("labels/label")]
    size = meta.find("original_size")
    size = root.find("meta/original_size") if size is None else size
    width, height = (None, None) if size is None else (
        int(size.findtext("width")), int(size.findtext("height")))
    return Task(labels, int(meta.findtext("size")), width, height,
                int(meta.findtext("start_frame") or 0), meta.findtext("mode") or "annotation",
                meta.findtext("name") or "")


def load_cvat_xml(source, task: Task | None = None) -> CvatImport:
    """What CVAT imports from a CVAT 1.1 XML file (path or bytes) into ``task``."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if b"<!ENTITY" in data:
        raise CvatImportError("entity declarations: defusedxml refuses the file")
    root = ET.fromstring(data)
    task = meta_task(root) if task is None else task
    result = CvatImport(task, [], [], [])
    for child in root:
        if child.tag in _ALL_SHAPES:
            raise CvatImportError(f"<{child.tag}> outside any track or image: load_anno fails "
                                  "(TypeError)")
        if child.tag == "track":
            _track(child, result)
        elif child.tag == "image":
            _image(child, result)
    return result


def _track(el: ET.Element, result: CvatImport) -> None:
    task, label = result.task, _get(el, "label")
    group = _num(int, el.get("group_id", "0"), "group_id")
    shapes = []
    for child in el:
        if child.tag not in _ALL_SHAPES:
            continue
        frame = _num(int, _get(child, "frame"), "frame")
        shape = _shape(child, frame, outside=child.get("outside", "0") == "1",
                       keyframe=_get(child, "keyframe") == "1")
        if shape.keyframe:
            shapes.append(shape)
    if not shapes:
        raise CvatImportError(f"a {label!r} track without keyframes: load_anno fails "
                              "(IndexError on track.shapes[0])")
    if shapes[0].type == "mask":  # "convert mask tracks to shapes"
        first = shapes[0]
        first.label, first.outside, first.keyframe = label, False, True
        _add_shape(first, result)
        return
    spec = task.label(label)
    attributes: dict[str, str] = {}
    for shape in shapes:
        task.check_frame(shape.frame)
        attributes = _attributes(spec, shape.attributes, mutable=False)  # the last one's
        shape.attributes = _attributes(spec, shape.attributes, mutable=True)
    result.tracks.append(Track(label, shapes, group, attributes))


def _cast_int(text: str) -> int | None:  # match_dm_item's dm.util.cast(text, int)
    try:
        return int(text)
    except ValueError:
        return None


def _frame_of_image(el: ET.Element, task: Task) -> int:
    """``match_dm_item``: the frame named so, else the ``id`` as a frame index, else (video)
    the number after ``frame_``; returns the absolute frame (``abs_frame_id``)."""
    name, index = os.path.splitext(_get(el, "name"))[0], _get(el, "id")
    video, rel = task.mode == "interpolation", None
    if video and name.startswith("frame_") and _cast_int(name[6:]) is not None:
        number = int(name[6:])  # the task's frame names are frame_%06d of the absolute frame
        if name == f"frame_{number:06d}" and 0 <= number - task.start_frame < task.size:
            rel = number - task.start_frame
    if rel is None:
        rel = _cast_int(index)
    if rel is None and video:
        rel = _cast_int(os.path.basename(name)[len("frame_"):])
    if rel is None or not 0 <= rel < task.size:
        raise CvatImportError(f"Could not match item id: '{name}' with any task frame")
    return task.start_frame + rel


def _add_shape(shape: Shape, result: CvatImport, width=None, height=None) -> None:
    task = result.task
    spec = task.label(shape.label)
    task.check_frame(shape.frame)
    shape.attributes = _attributes(spec, shape.attributes, mutable=None)
    if shape.type == "mask":
        shape.mask = decode_mask(shape.points, task.height or height, task.width or width)
    result.shapes.append(shape)


def _image(el: ET.Element, result: CvatImport) -> None:
    frame = _frame_of_image(el, result.task)
    width, height = (_num(int, el.get(k, "0"), k) for k in ("width", "height"))
    for child in el:
        group = _num(int, child.get("group_id", "0"), "group_id")
        if child.tag == "tag":
            result.task.label(_get(child, "label"))
            result.tags.append((frame, child.attrib["label"], group))
        elif child.tag in _ALL_SHAPES:
            label = _get(child, "label")
            _add_shape(_shape(child, frame, label=label, group=group), result, width, height)
