"""CVAT for video 1.1 XML (and CVAT for images 1.1): read as CVAT's importer reads it, and
written back with only merged tracks changed.

The one reader of CVAT XML annotations: ``autotrack merge`` (:mod:`autotrack.merge.command`)
proposes and joins its tracks and writes the document back; ``autotrack export``
(:mod:`autotrack.finetune.offline`) takes :meth:`CvatXml.annotations`, what a task holds
after CVAT imports the file; ``autotrack evaluate`` (:mod:`autotrack.evaluate.sequences`)
shares :func:`cvat_root` and :func:`meta_unit`. It lives outside the feature packages so that
none of them imports another's internals.

Reading follows CVAT's importer (``load_anno`` in cvat/apps/dataset_manager/formats/
cvat.py; tests/cvat_xml.py models it):

* a ``<track id label source group_id>`` keeps its keyframes (``keyframe="1"``, or no
  ``keyframe`` attribute; CVAT's own export also writes every interpolated frame with
  ``keyframe="0"``, which the importer drops), sorted by frame, each with ``frame``,
  ``outside``, ``occluded``, ``z_order``, ``rotation`` and ``<attribute name>`` children:
  ``<box xtl ytl xbr ybr>``, ``<polygon|polyline|points points>``, ``<ellipse cx cy rx ry>``
  (CVAT's points: the centre and a corner) and ``<mask left top width height>`` (its runs
  are not decoded: the points are the mask's pixel box ``left, top, right, bottom``, as CVAT
  stores them after the runs). Cuboids and skeletons are read as shapes of that type
  without geometry. Every track needs an ``id``; two tracks with one id, or two keyframes of
  one track on one frame, are refused;
* a shape inside ``<image id>`` is a standalone shape on frame ``id``; ``<tag>`` a tag;
* label names become local label ids (in the order ``<meta>`` lists them, each with its
  ``<type>``, default ``any``; then any only the annotations use, type ``any``); an attribute
  the label declares immutable (``<mutable>False</mutable>``) is a track attribute (CVAT's
  export repeats it on every shape; the first keyframe's value is kept), any other stays on
  its shape;
* ``<meta>``'s task (or job, or a project's one task) gives the size (``size``, else
  ``stop_frame + 1``), ``start_frame``, ``name`` and the frame size. A frame filter or a
  project of several tasks is not refused here (``autotrack merge`` does not care); a door
  that maps XML frames to video frames calls :func:`meta_unit`, which refuses both.

Files that declare entities are refused (CVAT parses with ``defusedxml``).

:meth:`CvatXml.annotations` is CVAT's JSON form of what the import stores: the tracks with
keyframes (a track whose first keyframe is a mask becomes that one shape, visible, group 0:
CVAT has no mask tracks), the ``<image>`` shapes and the tags.

Writing keeps the document: every element but the merged tracks' is written back as read
(comments and processing instructions too; ``xml.etree`` may respell quoting and empty
elements, never content). A merge puts one ``<track>`` where the first of its pieces stood,
with the first piece's XML attributes (its id), the joined ``source``, no ``group_id`` (a
merged track's group is 0, as in CVAT's merge) and only keyframes (CVAT interpolates the
rest on upload); the other pieces' ``<track>`` elements are removed.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotrack.errors import InputError

SHAPE_TYPES = {"box": "rectangle", "polygon": "polygon", "polyline": "polyline",
               "points": "points", "ellipse": "ellipse", "cuboid": "cuboid", "mask": "mask",
               "skeleton": "skeleton"}
READ_TYPES = frozenset({"rectangle", "polygon", "polyline", "points", "ellipse"})
_TAGS = {kind: tag for tag, kind in SHAPE_TYPES.items()}


@dataclass
class CvatXml:
    """A CVAT for video (or images) 1.1 document and its annotations in CVAT's JSON form."""

    path: Path
    root: ET.Element
    labels: dict[int, str]  # local label id -> name
    tracks: dict[int, dict[str, Any]]  # the XML's track id -> track JSON (with "id")
    specs: dict[int, str]  # local attribute id -> attribute name
    frame_count: int | None  # from <meta>, when it says
    width: int | None
    height: int | None
    label_types: dict[int, str] = field(default_factory=dict)  # local label id -> type
    shapes: list[dict[str, Any]] = field(default_factory=list)  # <image> shapes
    tags: list[dict[str, Any]] = field(default_factory=list)  # <image> tags
    start_frame: int = 0  # XML frame f is the media's frame start_frame + f
    name: str = ""

    def position(self, track_id: int) -> int:
        """Where the track's ``<track>`` element stands among the root's children."""
        for index, child in enumerate(self.root):
            if child.tag == "track" and child.get("id") == str(track_id):
                return index
        raise KeyError(track_id)

    def label_list(self) -> list[tuple[str, str]]:
        """``(name, type)`` of every label, in local id order."""
        return [(name, self.label_types.get(i, "any")) for i, name in sorted(self.labels.items())]

    def annotations(self) -> dict[str, list[dict[str, Any]]]:
        """What a task holds after CVAT imports the file, in CVAT's JSON form (``tracks``,
        ``shapes``, ``tags``; label ids are :attr:`labels`' keys): tracks without keyframes
        left out, a track whose first keyframe is a mask turned into that one shape."""
        tracks, shapes = [], list(self.shapes)
        for track in self.tracks.values():
            keys = track["shapes"]
            if not keys:
                continue
            if keys[0]["type"] == "mask":  # load_anno: "convert mask tracks to shapes"
                shapes.append({**keys[0], "outside": False, "label_id": track["label_id"],
                               "group": 0, "source": track["source"],
                               "attributes": track["attributes"] + keys[0]["attributes"]})
                continue
            tracks.append(track)
        return {"tracks": tracks, "shapes": shapes, "tags": list(self.tags)}


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}")


def _number(path: Path, element: ET.Element, key: str, parse: Any, default: Any = None) -> Any:
    text = element.get(key)
    if text is None:
        if default is not None:
            return default
        raise _bad(path, f"a <{element.tag}> has no {key}")
    try:
        return parse(text)
    except ValueError:
        raise _bad(path, f"<{element.tag} {key}={text!r}> is not a number") from None


def _points(path: Path, el: ET.Element, kind: str) -> list[float]:
    def numbers(*keys: str, parse: Any = float) -> list[Any]:
        return [_number(path, el, k, parse) for k in keys]

    if kind == "rectangle":
        return numbers("xtl", "ytl", "xbr", "ybr")
    if kind == "ellipse":  # CVAT stores an ellipse as its centre and a corner
        cx, cy, rx, ry = numbers("cx", "cy", "rx", "ry")
        return [cx, cy, cx + rx, cy - ry]
    if kind == "mask":  # the box CVAT stores after the runs (right/bottom inclusive)
        left, top, width, height = numbers("left", "top", "width", "height", parse=int)
        return [left, top, left + width - 1, top + height - 1]
    if kind not in READ_TYPES:
        return []
    text = el.get("points")
    if text is None:
        raise _bad(path, f"a <{el.tag}> has no points")
    try:
        return [float(v) for pair in text.split(";") if pair.strip() for v in pair.split(",")]
    except ValueError:
        raise _bad(path, f"<{el.tag} points={text[:40]!r}> are not x,y;x,y numbers") from None


def _flag(el: ET.Element, key: str) -> bool:
    return el.get(key, "0") == "1"


class _Labels:
    """Label and attribute names as local ids, with each label's type and each attribute's
    mutability."""

    def __init__(self, root: ET.Element) -> None:
        self.ids: dict[str, int] = {}
        self.types: dict[int, str] = {}
        self.specs: dict[tuple[str, str], int] = {}
        self.mutable: dict[tuple[str, str], bool] = {}
        meta = root.find("meta")
        found = [] if meta is None else next(
            (found for scope in ("task", "job", "project")
             if (found := meta.findall(f"{scope}/labels/label"))), [])
        for label in found:
            name = label.findtext("name") or ""
            self.label(name, (label.findtext("type") or "").strip() or "any")
            for spec in label.iterfind("attributes/attribute"):
                key = (name, spec.findtext("name") or "")
                self.spec(key)
                self.mutable[key] = (spec.findtext("mutable") or "True").strip() != "False"

    def label(self, name: str, kind: str = "any") -> int:
        if name not in self.ids:
            self.ids[name] = len(self.ids) + 1
            self.types[self.ids[name]] = kind
        return self.ids[name]

    def spec(self, key: tuple[str, str]) -> int:
        return self.specs.setdefault(key, len(self.specs) + 1)


def _unit(meta: ET.Element) -> tuple[ET.Element | None, int]:
    """The ``<task>``, ``<job>`` or project task ``<meta>`` describes (None for a project of
    several tasks), and how many tasks the project lists."""
    unit = meta.find("task")
    if unit is None:
        unit = meta.find("job")
    if unit is not None or meta.find("project") is None:
        return unit, 0
    tasks = meta.findall("project/tasks/task")
    return (tasks[0] if len(tasks) == 1 else None), len(tasks)


def meta_unit(root: ET.Element, source: str) -> ET.Element | None:
    """The ``<task>`` (or ``<job>``, or a project's one task) that ``<meta>`` describes, None
    without one; InputError for a project of several tasks or a frame filter (not step 1):
    where XML frames must be the media's frames."""
    meta = root.find("meta")
    if meta is None:
        return None
    unit, tasks = _unit(meta)
    if tasks > 1:
        raise InputError(f"{source}: a project export with {tasks} tasks; "
                         "export each task on its own")
    if unit is None:
        return None
    frame_filter = (unit.findtext("frame_filter") or "").strip()
    if frame_filter and frame_filter.replace(" ", "") not in ("step=1",):
        raise InputError(f"{source}: tasks with a frame filter ({frame_filter}) are not supported")
    return unit


def _meta(root: ET.Element, path: Path) -> dict[str, Any]:
    """``frame_count``, ``width``, ``height``, ``start_frame`` and ``name`` from ``<meta>``."""
    meta = root.find("meta")
    unit = None if meta is None else _unit(meta)[0]

    def number(*where: tuple[ET.Element | None, str]) -> int | None:
        for element, key in where:
            text = None if element is None else (element.findtext(key) or "").strip()
            if text:
                try:
                    return int(text)
                except ValueError:
                    raise _bad(path, f"<meta> has <{key}>{text[:20]}</...>, not a whole "
                                     "number") from None
        return None

    size = number((unit, "size"))
    if size is None:
        stop = number((unit, "stop_frame"))
        size = None if stop is None else stop + 1
    return {"frame_count": size, "start_frame": number((unit, "start_frame")) or 0,
            "width": number((unit, "original_size/width"), (meta, "original_size/width")),
            "height": number((unit, "original_size/height"), (meta, "original_size/height")),
            "name": "" if unit is None else (unit.findtext("name") or "").strip()}


def _attributes(el: ET.Element, label: str, labels: _Labels) -> list[tuple[int, str, bool]]:
    """``(spec id, value, mutable)`` of an element's ``<attribute name>`` children."""
    out = []
    for attribute in el.iterfind("attribute"):
        key = (label, attribute.get("name") or "")
        out.append((labels.spec(key), attribute.text or "", labels.mutable.get(key, True)))
    return out


def _shape(path: Path, el: ET.Element, kind: str, frame: int) -> dict[str, Any]:
    return {"type": kind, "frame": frame, "points": _points(path, el, kind),
            "outside": _flag(el, "outside"), "occluded": _flag(el, "occluded"),
            "z_order": _number(path, el, "z_order", int, 0),
            "rotation": _number(path, el, "rotation", float, 0.0)}


def _track(path: Path, el: ET.Element, labels: _Labels) -> dict[str, Any]:
    label = el.get("label")
    if not label:
        raise _bad(path, f"<track id={el.get('id')!r}> has no label")
    label_id = labels.label(label)
    shapes = []
    track_attributes: dict[int, str] = {}
    for child in el:
        kind = SHAPE_TYPES.get(str(child.tag))
        if kind is None or child.get("keyframe", "1") != "1":
            continue
        shape_attributes = []
        for spec, value, mutable in _attributes(child, label, labels):
            if mutable:
                shape_attributes.append({"spec_id": spec, "value": value})
            elif not shapes:  # the first keyframe's value (CVAT repeats it on every shape)
                track_attributes[spec] = value
        shapes.append({**_shape(path, child, kind, _number(path, child, "frame", int)),
                       "attributes": shape_attributes})
    frames = [s["frame"] for s in shapes]
    if len(frames) != len(set(frames)):
        duplicate = next(f for f in frames if frames.count(f) > 1)
        raise _bad(path, f"track {el.get('id')} has two keyframes on frame {duplicate}")
    track_id = _number(path, el, "id", int)
    return {"id": track_id, "label_id": label_id, "frame": min(frames, default=0),
            "group": _number(path, el, "group_id", int, 0),
            "source": el.get("source") or "manual",
            "attributes": [{"spec_id": s, "value": v} for s, v in track_attributes.items()],
            "shapes": sorted(shapes, key=lambda s: s["frame"]), "elements": []}


def _image(path: Path, image: ET.Element, labels: _Labels, doc: CvatXml) -> None:
    """The standalone shapes and tags of an ``<image id>``, on frame ``id``."""
    frame = _number(path, image, "id", int)
    for el in image:
        kind = SHAPE_TYPES.get(str(el.tag))
        if kind is None and el.tag != "tag":
            continue
        label = el.get("label")
        if not label:
            raise _bad(path, f"a <{el.tag}> in <image id={frame}> has no label")
        common = {"frame": frame, "label_id": labels.label(label),
                  "group": _number(path, el, "group_id", int, 0),
                  "source": el.get("source") or "manual",
                  "attributes": [{"spec_id": s, "value": v}
                                 for s, v, _ in _attributes(el, label, labels)]}
        if kind is None:
            doc.tags.append(common)
        else:
            doc.shapes.append({**_shape(path, el, kind, frame), **common, "elements": []})


def cvat_root(data: bytes, source: str, *, comments: bool = False) -> ET.Element:
    """The ``<annotations>`` root of a CVAT XML document (with its comments and processing
    instructions if ``comments``); InputError for anything else, and for a document that
    declares entities (CVAT refuses those: it parses with ``defusedxml``)."""
    if b"<!ENTITY" in data:
        raise InputError(f"{source}: declares entities; CVAT refuses such files, and so does "
                         "this tool")
    builder = ET.TreeBuilder(insert_comments=comments, insert_pis=comments)
    parser = ET.XMLParser(target=builder)
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise InputError(f"{source}: not well-formed XML ({exc})") from None
    if root.tag != "annotations":
        raise InputError(f"{source}: not a CVAT XML file (its root is <{root.tag}>, not "
                         "<annotations>)")
    return root


def parse_cvat_xml(data: bytes, path: str | Path = "<xml>") -> CvatXml:
    """A CVAT for video (or images) 1.1 document from its bytes; :class:`InputError` (one
    line, naming ``path``) for anything that is not one."""
    path = Path(path)
    root = cvat_root(data, str(path), comments=True)
    labels = _Labels(root)
    tracks: dict[int, dict[str, Any]] = {}
    for el in root.iterfind("track"):
        track = _track(path, el, labels)
        if track["id"] in tracks:
            raise _bad(path, f"two tracks have id {track['id']}")
        tracks[track["id"]] = track
    doc = CvatXml(path, root, {}, tracks, {}, **_meta(root, path))
    for image in root.iterfind("image"):
        _image(path, image, labels, doc)
    doc.labels = {i: name for name, i in labels.ids.items()}
    doc.label_types = dict(labels.types)
    doc.specs = {i: key[1] for key, i in labels.specs.items()}
    return doc


def read_cvat_xml(path: str | Path) -> CvatXml:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror or exc})") from None
    return parse_cvat_xml(data, path)


# --- writing ---------------------------------------------------------------------------------


def _coord(value: float) -> str:
    return f"{float(value) + 0.0:.2f}"


def _geometry(shape: Mapping[str, Any]) -> dict[str, str]:
    kind, p = shape["type"], [float(v) for v in shape["points"]]
    if kind == "rectangle":
        return dict(zip(("xtl", "ytl", "xbr", "ybr"), map(_coord, p)))
    if kind == "ellipse":
        cx, cy, x, y = p
        return {"cx": _coord(cx), "cy": _coord(cy), "rx": _coord(x - cx), "ry": _coord(cy - y)}
    return {"points": ";".join(f"{_coord(x)},{_coord(y)}" for x, y in zip(p[0::2], p[1::2]))}


def track_element(track: Mapping[str, Any], template: ET.Element,
                  specs: Mapping[int, str]) -> ET.Element:
    """A ``<track>`` for ``track`` (a merge: keyframes only) with ``template``'s XML
    attributes, and the track's ``id`` (if it has one), ``source`` and ``group_id``."""
    attrib = dict(template.attrib)
    if track.get("id") is not None:
        attrib["id"] = str(track["id"])
    attrib["source"] = str(track.get("source") or "manual")
    attrib.pop("group_id", None)
    if track.get("group"):
        attrib["group_id"] = str(track["group"])
    element = ET.Element("track", attrib)
    held = [(specs.get(int(a["spec_id"]), str(a["spec_id"])), str(a["value"]))
            for a in track.get("attributes") or []]
    for shape in sorted(track["shapes"], key=lambda s: int(s["frame"])):
        kind = shape["type"]
        if kind not in READ_TYPES:
            raise InputError(f"a {kind} track cannot be written back by this tool")
        attrs = {"frame": str(int(shape["frame"])), "outside": str(int(bool(shape.get("outside")))),
                 "occluded": str(int(bool(shape.get("occluded")))), "keyframe": "1",
                 **_geometry(shape), "z_order": str(int(shape.get("z_order") or 0))}
        rotation = float(shape.get("rotation") or 0.0)
        if rotation and kind in ("rectangle", "ellipse"):
            attrs["rotation"] = f"{rotation:.2f}"
        child = ET.SubElement(element, _TAGS[kind], attrs)
        own = [(specs.get(int(a["spec_id"]), str(a["spec_id"])), str(a["value"]))
               for a in shape.get("attributes") or []]
        for name, value in own + held:
            ET.SubElement(child, "attribute", {"name": name}).text = value
    return element


def merged_xml(doc: CvatXml, merges: Sequence[tuple[Sequence[int], Mapping[str, Any]]]) -> bytes:
    """The document with each merge's pieces (XML track ids) replaced by its joined track,
    where the first of them stood; everything else as read."""
    root = copy.deepcopy(doc.root)
    children = list(root)
    replace: dict[int, ET.Element] = {}
    drop: set[int] = set()
    for ids, merged in merges:
        positions = sorted(doc.position(i) for i in ids)
        first = children[positions[0]]
        element = track_element(merged, first, doc.specs)
        ET.indent(element, space="  ", level=1)
        element.tail = first.tail
        replace[positions[0]] = element
        drop.update(positions[1:])
    for index in sorted(replace.keys() | drop, reverse=True):
        if index in drop:
            root.remove(children[index])
        else:
            root[index] = replace[index]
    if drop:  # the last child's tail closes the root's indentation
        kept = list(root)
        if kept and children[-1].tail is not None and (len(children) - 1) in drop:
            kept[-1].tail = children[-1].tail
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["READ_TYPES", "SHAPE_TYPES", "CvatXml", "cvat_root", "merged_xml", "meta_unit",
           "parse_cvat_xml", "read_cvat_xml", "track_element"]
