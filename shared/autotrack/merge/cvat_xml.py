"""CVAT for video 1.1 XML, read into the track JSON both merge doors join, and written back
with only the merged tracks changed.

Reading follows what CVAT's importer (``load_anno`` in cvat/apps/dataset_manager/formats/
cvat.py) takes from a ``<track id label source group_id>``: its keyframes (``keyframe="1"``;
CVAT's own export also writes every interpolated frame with ``keyframe="0"``, which the
importer drops) as ``<box xtl ytl xbr ybr rotation>``, ``<polygon|polyline|points points>``
or ``<ellipse cx cy rx ry>`` with ``frame``, ``outside``, ``occluded``, ``z_order`` and
``<attribute name>`` children. Label names become local label ids (in the order ``<meta>``
lists them, then any only the tracks use); an attribute the label declares immutable
(``<mutable>False</mutable>``) is a track attribute (CVAT's export repeats it on every shape),
any other stays on its shape. Masks, skeletons and cuboids are read as tracks of that type
without geometry: never proposed, and refused by a merge.

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
from dataclasses import dataclass
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
    """A CVAT for video 1.1 document and its tracks in CVAT's JSON form."""

    path: Path
    root: ET.Element
    labels: dict[int, str]  # local label id -> name
    tracks: dict[int, dict[str, Any]]  # the XML's track id -> track JSON (with "id")
    specs: dict[int, str]  # local attribute id -> attribute name
    frame_count: int | None  # from <meta>, when it says
    width: int | None
    height: int | None

    def position(self, track_id: int) -> int:
        """Where the track's ``<track>`` element stands among the root's children."""
        for index, child in enumerate(self.root):
            if child.tag == "track" and child.get("id") == str(track_id):
                return index
        raise KeyError(track_id)


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
    def floats(*keys: str) -> list[float]:
        return [_number(path, el, k, float) for k in keys]

    if kind == "rectangle":
        return floats("xtl", "ytl", "xbr", "ybr")
    if kind == "ellipse":  # CVAT stores an ellipse as its centre and a corner
        cx, cy, rx, ry = floats("cx", "cy", "rx", "ry")
        return [cx, cy, cx + rx, cy - ry]
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
    """Label and attribute names as local ids, with each attribute's mutability."""

    def __init__(self, root: ET.Element) -> None:
        self.ids: dict[str, int] = {}
        self.specs: dict[tuple[str, str], int] = {}
        self.mutable: dict[tuple[str, str], bool] = {}
        meta = root.find("meta")
        found = [] if meta is None else next(
            (found for scope in ("task", "job", "project")
             if (found := meta.findall(f"{scope}/labels/label"))), [])
        for label in found:
            name = label.findtext("name") or ""
            self.label(name)
            for spec in label.iterfind("attributes/attribute"):
                key = (name, spec.findtext("name") or "")
                self.spec(key)
                self.mutable[key] = (spec.findtext("mutable") or "True").strip() != "False"

    def label(self, name: str) -> int:
        return self.ids.setdefault(name, len(self.ids) + 1)

    def spec(self, key: tuple[str, str]) -> int:
        return self.specs.setdefault(key, len(self.specs) + 1)


def _meta_size(root: ET.Element) -> tuple[int | None, int | None, int | None]:
    def number(*paths: str) -> int | None:
        for where in paths:
            text = root.findtext(where)
            if text is not None and text.strip().isdigit():
                return int(text)
        return None

    size = number("meta/task/size", "meta/job/size")
    if size is None:
        stop = number("meta/task/stop_frame", "meta/job/stop_frame")
        size = None if stop is None else stop + 1
    width = number("meta/task/original_size/width", "meta/job/original_size/width",
                   "meta/original_size/width")
    height = number("meta/task/original_size/height", "meta/job/original_size/height",
                    "meta/original_size/height")
    return size, width, height


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
        for attribute in child.iterfind("attribute"):
            key = (label, attribute.get("name") or "")
            spec = labels.spec(key)
            if labels.mutable.get(key, True):
                shape_attributes.append({"spec_id": spec, "value": attribute.text or ""})
            elif not shapes:  # the first keyframe's value (CVAT repeats it on every shape)
                track_attributes[spec] = attribute.text or ""
        shapes.append({
            "type": kind, "frame": _number(path, child, "frame", int),
            "points": _points(path, child, kind), "outside": _flag(child, "outside"),
            "occluded": _flag(child, "occluded"),
            "z_order": _number(path, child, "z_order", int, 0),
            "rotation": _number(path, child, "rotation", float, 0.0),
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
            "shapes": shapes, "elements": []}


def parse_cvat_xml(data: bytes, path: str | Path = "<xml>") -> CvatXml:
    """A CVAT for video 1.1 document from its bytes; :class:`InputError` (one line, naming
    ``path``) for anything that is not one."""
    path = Path(path)
    if b"<!ENTITY" in data:
        raise _bad(path, "declares entities; CVAT refuses such files, and so does this tool")
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise _bad(path, f"not XML ({exc})") from None
    if root.tag != "annotations":
        raise _bad(path, f"not CVAT XML: its root is <{root.tag}>, not <annotations>")
    labels = _Labels(root)
    tracks: dict[int, dict[str, Any]] = {}
    for el in root.iterfind("track"):
        track = _track(path, el, labels)
        if track["id"] in tracks:
            raise _bad(path, f"two tracks have id {track['id']}")
        tracks[track["id"]] = track
    size, width, height = _meta_size(root)
    return CvatXml(path, root, {i: name for name, i in labels.ids.items()}, tracks,
                   {i: key[1] for key, i in labels.specs.items()}, size, width, height)


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


__all__ = ["READ_TYPES", "CvatXml", "merged_xml", "parse_cvat_xml", "read_cvat_xml",
           "track_element"]
