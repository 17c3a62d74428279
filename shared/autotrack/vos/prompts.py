"""Prompt files: which objects to segment in a video, where and how they first look.

``autotrack annotate VIDEO --segmenter sam2 --prompts prompts.json`` reads one JSON file.
It is an object with an ``objects`` list (or just that list); each entry prompts one object
on one frame::

    {
      "objects": [
        {"id": 1, "label": "person", "frame": 0, "box": [120, 40, 260, 400]},
        {"id": 2, "label": "cat", "frame": 0,
         "points": [[410, 300], [450, 310]], "point_labels": [1, 0]},
        {"id": 3, "label": "bed", "frame": 12,
         "mask": {"polygon": [[10, 300], [500, 290], [520, 530], [12, 535]]}},
        {"id": 4, "label": "lamp", "frame": 0,
         "mask": {"rle": "1, 2, 3, 1", "left": 600, "top": 80, "width": 7, "height": 1}},
        {"id": 1, "label": "person", "frame": 90, "points": [[200, 150]]}
      ]
    }

Fields (anything else is an error, so a typo never passes silently):

* ``id`` (integer >= 0): the object; it becomes one CVAT track. The same id on a later
  frame *corrects* the object there (its label must be the same); an id may appear once
  per frame.
* ``label`` (non-empty string): the CVAT label name.
* ``frame`` (integer >= 0): the 0-based frame the prompt applies to.
* at least one of:

  - ``box``: ``[x1, y1, x2, y2]`` in pixels, ``x2 > x1`` and ``y2 > y1``;
  - ``points``: ``[[x, y], ...]`` clicks in pixels, with ``point_labels`` (1 = on the
    object, 0 = not on it; all 1 when left out);
  - ``mask``: either CVAT's run-length form, exactly as in CVAT XML ``<mask rle="..."
    left top width height>`` (runs over the width x height box row by row, starting with
    background; ``rle`` a comma-separated string or a list of integers), or
    ``{"polygon": [[x, y], ...]}`` (at least three points).

Coordinates must lie inside the frame and frames inside the video; that is checked against
the video before any model runs (:meth:`PromptFile.check`). Every error names the file and
the line of the offending entry or field, e.g. ``prompts.json:7: object 2: box needs
x2 > x1``. XMem starts objects from masks (a box becomes a filled rectangle); clicks
alone need SAM2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotrack.errors import InputError
from autotrack.masks import decode_cvat_mask, polygons_to_masks
from autotrack.numbers import NumberError, describe, parse_integer, parse_number, quote
from autotrack.vos.base import ObjectPrompt

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 10_000
MAX_POINTS = 1_000
MAX_ID = 2**31 - 1
_ENTRY_KEYS = {"id", "label", "frame", "box", "points", "point_labels", "mask"}
_RLE_KEYS = {"rle", "left", "top", "width", "height"}


class _Located(dict):
    """A JSON object that remembers where it starts and ends in the text."""

    start = 0
    end = 0


class _LongNumber(ValueError):
    """An integer literal with more digits than any prompt number has."""


_MAX_INT_DIGITS = 18


def _parse_int(text: str) -> int:
    """Python refuses to convert integers of over 4,300 digits (ValueError) and is slow far
    below that: a prompt's numbers never need more than 18."""
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _LongNumber(f"a number of {len(text.lstrip('-'))} digits")
    return int(text)


def _parse_located(text: str):
    """``json.loads`` whose objects are :class:`_Located` (the pure-Python scanner lets us
    see where each object starts; prompt files are small)."""
    from json import decoder, scanner

    dec = json.JSONDecoder(object_pairs_hook=_Located, parse_int=_parse_int)

    def parse_object(s_and_end, *args):
        obj, end = decoder.JSONObject(s_and_end, *args)
        if isinstance(obj, _Located):
            obj.start, obj.end = s_and_end[1] - 1, end
        return obj, end

    dec.parse_object = parse_object
    dec.scan_once = scanner.py_make_scanner(dec)
    return dec.decode(text)


@dataclass(frozen=True)
class MaskSpec:
    """A mask prompt as written: CVAT RLE over a box, or a polygon."""

    rle: tuple[int, ...] | None = None
    left: int = 0
    top: int = 0
    width: int = 0
    height: int = 0
    polygon: np.ndarray | None = None  # (K, 2)

    def fits(self, width: int, height: int) -> bool:
        if self.polygon is not None:
            return bool(((self.polygon >= 0) & (self.polygon <= [width - 1, height - 1])).all())
        return self.left + self.width <= width and self.top + self.height <= height

    def render(self, height: int, width: int) -> np.ndarray:
        """The (height, width) bool mask."""
        if self.polygon is not None:
            return polygons_to_masks([self.polygon], (height, width))[0]
        box = (self.left, self.top, self.left + self.width - 1, self.top + self.height - 1)
        return decode_cvat_mask([*self.rle, *box], height, width)


@dataclass(frozen=True)
class PromptEntry:
    """One validated entry; ``line`` is where it starts in the file (1-based)."""

    line: int
    object_id: int
    label: str
    frame: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    box: tuple[float, float, float, float] | None = None
    mask: MaskSpec | None = None

    def prompt(self, height: int, width: int) -> ObjectPrompt:
        """The :class:`ObjectPrompt` for a ``width`` x ``height`` frame."""
        mask = None if self.mask is None else self.mask.render(height, width)
        return ObjectPrompt(self.object_id, self.points, self.point_labels, self.box, mask)


@dataclass(frozen=True)
class PromptFile:
    source: str
    entries: tuple[PromptEntry, ...]
    _by_frame: Mapping[int, tuple[PromptEntry, ...]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_frame: dict[int, list[PromptEntry]] = {}
        for e in self.entries:
            by_frame.setdefault(e.frame, []).append(e)
        object.__setattr__(self, "_by_frame", {f: tuple(v) for f, v in by_frame.items()})

    @property
    def labels(self) -> Mapping[int, str]:
        """Object id -> label."""
        return {e.object_id: e.label for e in self.entries}

    @property
    def frames(self) -> list[int]:
        return sorted(self._by_frame)

    def on_frame(self, frame: int) -> list[PromptEntry]:
        """The entries on ``frame``, in file order (an index lookup, not a scan)."""
        return list(self._by_frame.get(frame, ()))

    def prompts_for(self, frame: int, height: int, width: int) -> list[ObjectPrompt]:
        return [e.prompt(height, width) for e in self.on_frame(frame)]

    def check(self, *, width: int, height: int, frame_count: int | None = None,
              no_clicks_only: bool = False) -> None:
        """Raise :class:`InputError` (file:line) for a prompt outside the video: a frame past
        its end, a point, box or mask outside a ``width`` x ``height`` frame; with
        ``no_clicks_only`` (XMem, which starts objects from masks and takes a box as a
        filled rectangle), also for prompts that are clicks alone."""
        for e in self.entries:
            where = f"{self.source}:{e.line}: object {e.object_id}"
            if frame_count is not None and e.frame >= frame_count:
                raise InputError(f"{where}: frame {e.frame} is past the video's last frame "
                                 f"{frame_count - 1}")
            if len(e.points) and not ((e.points >= 0) & (e.points <= [width, height])).all():
                raise InputError(f"{where}: a point lies outside the {width}x{height} frame")
            if e.box is not None:
                x1, y1, x2, y2 = e.box
                if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                    raise InputError(f"{where}: box {list(e.box)} reaches outside the "
                                     f"{width}x{height} frame")
            if e.mask is not None and not e.mask.fits(width, height):
                raise InputError(f"{where}: mask reaches outside the {width}x{height} frame")
            if no_clicks_only and e.mask is None and e.box is None:
                raise InputError(f"{where}: this segmenter starts objects from a mask or a "
                                 "box, not from clicks alone (use --segmenter sam2 for clicks)")


# ------------------------------------------------------------------------------ parsing
class _Reader:
    def __init__(self, source: str, text: str) -> None:
        self.source, self.text = source, text

    def line_of(self, index: int) -> int:
        return self.text.count("\n", 0, max(index, 0)) + 1

    def fail(self, entry: _Located | None, message: str, key: str | None = None):
        index = 0
        if entry is not None:
            index = entry.start
            if key is not None:
                found = self.text.find(f'"{key}"', entry.start, entry.end)
                index = found if found >= 0 else index
        raise InputError(f"{self.source}:{self.line_of(index)}: {message}")


def _is_int(value) -> bool:
    """A whole number a prompt may hold (:func:`autotrack.numbers.parse_integer`'s range)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    try:
        parse_integer(value, "value")
    except NumberError:
        return False
    return True


def _is_number(value) -> bool:
    """A finite number of sane size (:func:`autotrack.numbers.parse_number`)."""
    try:
        parse_number(value, "value")
    except NumberError:
        return False
    return True


def _xy_list(r: _Reader, entry, key: str, value, what: str, minimum: int) -> np.ndarray:
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        if len(value) % 2:
            r.fail(entry, f"{what}: a flat list needs an even count of numbers", key)
        value = [value[i:i + 2] for i in range(0, len(value), 2)]
    if not (isinstance(value, list)
            and all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)
                    for p in value)):
        r.fail(entry, f"{what} must be a list of [x, y] number pairs", key)
    if len(value) < minimum:
        r.fail(entry, f"{what} needs at least {minimum} point{'s' * (minimum > 1)}", key)
    if len(value) > MAX_POINTS:
        r.fail(entry, f"{what} has {len(value)} points; at most {MAX_POINTS}", key)
    return np.asarray(value, dtype=np.float32).reshape(-1, 2)


def _mask(r: _Reader, entry, value, where: str) -> MaskSpec:
    if not isinstance(value, dict):
        r.fail(entry, f"{where}: mask must be an object with 'rle' (CVAT run lengths, "
                      "left, top, width, height) or 'polygon'", "mask")
    keys = set(value)
    if keys == {"polygon"}:
        points = _xy_list(r, value, "polygon", value["polygon"], f"{where}: mask polygon", 3)
        return MaskSpec(polygon=points)
    if keys != _RLE_KEYS:
        extra = sorted(keys - _RLE_KEYS - {"polygon"})
        missing = sorted(_RLE_KEYS - keys)
        detail = (f"unknown field {quote(extra[0])}" if extra
                  else f"missing {', '.join(missing)}" if "polygon" not in keys
                  else "give either 'polygon' or 'rle', not both")
        r.fail(value, f"{where}: mask: {detail}")
    for key in ("left", "top", "width", "height"):
        v = value[key]
        if not _is_int(v) or v < 0 or (key in ("width", "height") and v == 0):
            r.fail(value, f"{where}: mask {key} must be a whole number "
                          f"{'> 0' if key in ('width', 'height') else '>= 0'}, got {describe(v)}", key)
    runs = value["rle"]
    if isinstance(runs, str):
        try:
            runs = [int(v) for v in runs.replace(" ", "").split(",") if v != ""]
        except ValueError:
            r.fail(value, f"{where}: mask rle must be comma-separated whole numbers", "rle")
    if not (isinstance(runs, list) and runs and all(_is_int(v) and v >= 0 for v in runs)):
        r.fail(value, f"{where}: mask rle must be a non-empty list of whole numbers >= 0", "rle")
    if sum(runs) != value["width"] * value["height"]:
        r.fail(value, f"{where}: mask rle covers {sum(runs)} pixels but its box is "
                      f"{value['width']}x{value['height']} = "
                      f"{value['width'] * value['height']}", "rle")
    if not any(runs[1::2]):
        r.fail(value, f"{where}: mask is empty (no foreground run)", "rle")
    return MaskSpec(rle=tuple(runs), left=value["left"], top=value["top"],
                    width=value["width"], height=value["height"])


def _entry(r: _Reader, entry) -> PromptEntry:
    if not isinstance(entry, _Located):
        r.fail(None, "each entry of 'objects' must be a JSON object")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        r.fail(entry, f"unknown field {quote(unknown[0])} (fields: {', '.join(sorted(_ENTRY_KEYS))})",
               unknown[0])
    for key in ("id", "label", "frame"):
        if key not in entry:
            r.fail(entry, f"entry lacks {key!r}")
    object_id, label, frame = entry["id"], entry["label"], entry["frame"]
    if not _is_int(object_id) or not 0 <= object_id <= MAX_ID:
        r.fail(entry, f"id must be a whole number from 0 to {MAX_ID}, got {describe(object_id)}", "id")
    where = f"object {object_id}"
    if not isinstance(label, str) or not label.strip() or len(label) > 256:
        r.fail(entry, f"{where}: label must be a non-empty string (at most 256 characters)",
               "label")
    if not _is_int(frame) or frame < 0:
        r.fail(entry, f"{where}: frame must be a whole number >= 0, got {describe(frame)}", "frame")
    if not ({"box", "points", "mask"} & set(entry)):
        r.fail(entry, f"{where}: give a 'box', 'points' or a 'mask'")
    if "point_labels" in entry and "points" not in entry:
        r.fail(entry, f"{where}: 'point_labels' without 'points'", "point_labels")

    box = None
    if "box" in entry:
        value = entry["box"]
        if not (isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)):
            r.fail(entry, f"{where}: box must be [x1, y1, x2, y2] (four numbers)", "box")
        x1, y1, x2, y2 = (float(v) for v in value)
        if not (x2 > x1 and y2 > y1):
            r.fail(entry, f"{where}: box needs x2 > x1 and y2 > y1, got {value}", "box")
        box = (x1, y1, x2, y2)
    points = np.zeros((0, 2), np.float32)
    labels = np.zeros(0, np.int32)
    if "points" in entry:
        points = _xy_list(r, entry, "points", entry["points"], f"{where}: points", 1)
        labels = np.ones(len(points), np.int32)
        if "point_labels" in entry:
            value = entry["point_labels"]
            if not (isinstance(value, list) and all(_is_int(v) and v in (0, 1) for v in value)):
                r.fail(entry, f"{where}: point_labels must be a list of 1 (on the object) or "
                              "0 (not on it)", "point_labels")
            if len(value) != len(points):
                r.fail(entry, f"{where}: {len(points)} points but {len(value)} point_labels",
                       "point_labels")
            labels = np.asarray(value, np.int32)
        if not labels.any() and box is None and "mask" not in entry:
            r.fail(entry, f"{where}: clicks need at least one positive point (label 1)",
                   "point_labels")
    mask = _mask(r, entry, entry["mask"], where) if "mask" in entry else None
    return PromptEntry(r.line_of(entry.start), object_id, label.strip(), frame, points, labels,
                       box, mask)


def parse_prompts(text: str, source: str = "<prompts>") -> PromptFile:
    """Validate the text of a prompt file (see the module docstring)."""
    r = _Reader(source, text)
    try:
        data = _parse_located(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}, column "
                         f"{exc.colno})") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except _LongNumber as exc:
        raise InputError(f"{source}: {exc}; prompt numbers have at most {_MAX_INT_DIGITS} "
                         "digits") from None
    if isinstance(data, _Located):
        unknown = sorted(set(data) - {"objects"})
        if unknown or "objects" not in data:
            r.fail(data, "the file must be {\"objects\": [...]} (or just the list); "
                         + (f"unknown field {quote(unknown[0])}" if unknown else "'objects' missing"),
                   unknown[0] if unknown else None)
        items = data["objects"]
    else:
        items = data
    if not isinstance(items, list):
        r.fail(None, "'objects' must be a list of prompt entries")
    if not items:
        r.fail(None, "no objects to segment: 'objects' is empty")
    if len(items) > MAX_ENTRIES:
        r.fail(None, f"{len(items)} entries; at most {MAX_ENTRIES}")
    entries = [_entry(r, item) for item in items]
    labels: dict[int, PromptEntry] = {}
    seen: dict[tuple[int, int], PromptEntry] = {}
    for e in entries:
        first = labels.setdefault(e.object_id, e)
        if first.label != e.label:
            raise InputError(f"{source}:{e.line}: object {e.object_id} is labelled "
                             f"{e.label!r} here but {first.label!r} on line {first.line}")
        other = seen.setdefault((e.object_id, e.frame), e)
        if other is not e:
            raise InputError(f"{source}:{e.line}: object {e.object_id} is prompted twice on "
                             f"frame {e.frame} (also on line {other.line}); merge the entries")
    return PromptFile(source, tuple(sorted(entries, key=lambda e: (e.frame, e.object_id))))


def load_prompts(path: str | os.PathLike[str]) -> PromptFile:
    """Read and validate a prompt file; every problem is one :class:`InputError` line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such prompt file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path}: prompt file is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_prompts(text, str(path))


def entries_from_prompts(prompts: Sequence[tuple[int, str, ObjectPrompt]]) -> PromptFile:
    """A :class:`PromptFile` from (frame, label, prompt) triples built in code (tests,
    other doors); mask prompts are kept as CVAT RLE."""
    from autotrack.masks import encode_cvat_mask

    entries = []
    for frame, label, p in prompts:
        spec = None
        if p.mask is not None:
            encoded = encode_cvat_mask(p.mask)
            if encoded is None:
                raise ValueError(f"object {p.object_id}: empty mask prompt")
            *runs, x1, y1, x2, y2 = encoded
            spec = MaskSpec(tuple(runs), x1, y1, x2 - x1 + 1, y2 - y1 + 1)
        entries.append(PromptEntry(0, p.object_id, label, frame, p.points, p.point_labels,
                                   p.box, spec))
    return PromptFile("<code>", tuple(sorted(entries, key=lambda e: (e.frame, e.object_id))))
