"""One sequence's objects, read from MOTChallenge text or CVAT XML, as per-frame arrays.

Both ground truth and predictions load into :class:`SequenceData`: for every frame the ids
of the objects present, their xyxy boxes and, where the file has them, their masks.

MOTChallenge text (``frame,id,x,y,w,h[,conf[,class[,visibility[,z]]]]``, 1-based frames,
commas or whitespace). Ground-truth rows are chosen as TrackEval's MOTChallenge loader
chooses them (``trackeval/datasets/mot_challenge_2d_box.py``), per ``convention``:

* ``mot15`` (default): a row is scored unless its conf column is 0 (TrackEval casts conf to
  int, so ``0.5`` counts as 0). Columns 8-10 are not read: in 2D MOT 2015 they hold world
  coordinates (TUD-Stadtmitte's column 8 is a metric x position, not a class), which is why
  TrackEval never applies class preprocessing to MOT15. MOT15 ground truth marks rows with
  conf ``1``; ``-1`` (the "no value" filler of result files) is kept, as TrackEval keeps
  it. py-motmetrics' ``eval_motchallenge`` instead drops ground truth with conf < 1; the two
  agree on every file whose conf column is 0 or 1, as on all MOTChallenge ground truth.
* ``mot16``/``mot17``/``mot20``: column 8 is the class (1-13). Only pedestrians (class 1)
  with non-zero conf are scored; every other row is kept aside as *ignored*, and a
  prediction that the per-frame Hungarian match at IoU >= 0.5 pairs with an ignored row of
  a distractor class (person on vehicle 2, static person 7, distractor 8, reflection 12,
  and for MOT20 non-MOT vehicle 6) is removed before scoring (done in ``metrics``).

Predictions in MOT text keep every row (their conf and class columns are not used).

CVAT XML (CVAT for video 1.1, as ``autotrack annotate`` and CVAT write it, and CVAT for
images 1.1): a ``<track>`` is read as CVAT's importer reads it, from its ``keyframe="1"``
shapes only, and expanded to every frame as CVAT does: boxes are linearly interpolated
between keyframes, a keyframe marked ``outside`` hides the object until the next keyframe,
and the last visible keyframe is held to the end of the task (``stop_frame``). CVAT
interpolates polygons towards the next keyframe (outside or not) with its own point-matching
scheme, which is not reproduced here, and has no interpolation for masks; so a visible polygon
or mask keyframe must be followed by the next keyframe on the very next frame, or be the
track's last keyframe (then, as in CVAT, it is held to the end). That is how CVAT exports
polygon and mask shapes: a one-frame track closed by an outside keyframe. The one exception
is a polygon keyframe followed (after a gap) by a keyframe with the very same points,
visible or outside: CVAT's interpolation between identical polygons is that polygon, so it
is held up to the next keyframe (how ``autotrack annotate --polygons`` writes tracks).
Shapes inside ``<image>`` elements (CVAT for images) are one-frame objects, except that
shapes sharing a ``group_id`` (> 0) are one object: CVAT's group means "the same object",
and ``autotrack annotate`` writes each mask track's per-frame shapes under one group
(shapes of one group on one frame are united).
A mask is CVAT's ``<mask rle="..." left top width height>``: run lengths over the
width x height box, row by row, starting with background. Ellipses, polylines, points,
cuboids and skeletons are skipped (and counted in ``skipped_shapes``).

Frames are matched by number: XML frame ``f`` is MOT frame ``f + 1``.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from autotrack.cvat_xml import cvat_root, meta_unit
from autotrack.errors import InputError
from autotrack.keyframes import Keyframe, interpolate
from autotrack.masks import decode_cvat_mask, polygons_to_masks

CONVENTIONS = ("mot15", "mot16", "mot17", "mot20")

# MOTChallenge ground-truth classes (TrackEval's class_name_to_class_id).
PEDESTRIAN_CLASS = 1
VALID_CLASSES = tuple(range(1, 14))
_DISTRACTORS = {"mot16": (2, 7, 8, 12), "mot17": (2, 7, 8, 12), "mot20": (2, 6, 7, 8, 12)}

_AREA_SHAPES = ("box", "polygon", "mask")
_OTHER_SHAPES = ("ellipse", "polyline", "points", "cuboid", "skeleton")


@dataclass(frozen=True)
class ObjectMask:
    """A binary mask stored over its own box: ``bitmap`` (h, w) bool with its top-left
    pixel at (``left``, ``top``) of the frame."""

    left: int
    top: int
    bitmap: np.ndarray

    def box(self) -> tuple[float, float, float, float]:
        """Tight xyxy box of the foreground in pixel-edge coordinates (a one-pixel mask at
        (x, y) is the box x, y, x + 1, y + 1); a zero-area box at the corner when empty."""
        rows = np.flatnonzero(self.bitmap.any(axis=1))
        if not len(rows):
            return (float(self.left), float(self.top), float(self.left), float(self.top))
        cols = np.flatnonzero(self.bitmap.any(axis=0))
        return (float(self.left + cols[0]), float(self.top + rows[0]),
                float(self.left + cols[-1] + 1), float(self.top + rows[-1] + 1))

    def paste(self, height: int, width: int) -> np.ndarray:
        """The (height, width) bool frame with this mask in place (cropped at the edges)."""
        frame = np.zeros((height, width), dtype=bool)
        h, w = self.bitmap.shape
        x0, y0 = max(self.left, 0), max(self.top, 0)
        x1, y1 = min(self.left + w, width), min(self.top + h, height)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = self.bitmap[y0 - self.top:y1 - self.top,
                                              x0 - self.left:x1 - self.left]
        return frame


@dataclass(frozen=True)
class SequenceData:
    """Objects per frame. ``ids[t]`` (N,) int64 are unique within frame ``t``; ``boxes[t]``
    (N, 4) float64 xyxy; ``masks[t]`` (or None when the file has no polygons or masks) holds
    an :class:`ObjectMask` or None per object. ``ignored_boxes[t]`` are ground-truth rows
    that are not scored (MOT16/17/20 non-pedestrians and zero-marked rows) and
    ``ignored_distractor[t]`` flags those whose matched predictions are removed."""

    name: str
    num_frames: int
    ids: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray, ...]
    masks: tuple[tuple[ObjectMask | None, ...], ...] | None = None
    image_size: tuple[int, int] | None = None  # (height, width)
    labels: Mapping[int, str] = field(default_factory=dict)  # object id -> label name
    ignored_boxes: tuple[np.ndarray, ...] = ()
    ignored_distractor: tuple[np.ndarray, ...] = ()
    source: str = ""
    skipped_shapes: int = 0
    declared_frames: int | None = None  # the task's frame count, where the file states it

    def __post_init__(self) -> None:
        if not self.ignored_boxes:
            object.__setattr__(self, "ignored_boxes",
                               tuple(np.zeros((0, 4)) for _ in range(self.num_frames)))
            object.__setattr__(self, "ignored_distractor",
                               tuple(np.zeros(0, dtype=bool) for _ in range(self.num_frames)))
        lengths = {len(self.ids), len(self.boxes), len(self.ignored_boxes),
                   len(self.ignored_distractor)}
        if self.masks is not None:
            lengths.add(len(self.masks))
        if lengths != {self.num_frames}:
            raise ValueError(f"{self.name}: per-frame lists do not all have "
                             f"{self.num_frames} frames")

    @property
    def has_masks(self) -> bool:
        return self.masks is not None and any(m is not None for f in self.masks for m in f)

    @property
    def object_ids(self) -> np.ndarray:
        """Sorted unique ids of the scored objects."""
        return np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *self.ids]))

    @property
    def num_boxes(self) -> int:
        return sum(len(i) for i in self.ids)

    @property
    def last_object_frame(self) -> int:
        """The last frame with a scored or ignored object (-1 when there is none)."""
        for t in range(self.num_frames - 1, -1, -1):
            if len(self.ids[t]) or len(self.ignored_boxes[t]):
                return t
        return -1

    def padded(self, num_frames: int) -> SequenceData:
        """The same objects over ``num_frames`` (>= ``self.num_frames``) frames."""
        extra = num_frames - self.num_frames
        if extra < 0:
            raise ValueError(f"cannot shorten {self.name} to {num_frames} frames")
        if extra == 0:
            return self
        return replace(
            self, num_frames=num_frames,
            ids=self.ids + tuple(np.zeros(0, dtype=np.int64) for _ in range(extra)),
            boxes=self.boxes + tuple(np.zeros((0, 4)) for _ in range(extra)),
            masks=None if self.masks is None else self.masks + tuple(() for _ in range(extra)),
            ignored_boxes=self.ignored_boxes + tuple(np.zeros((0, 4)) for _ in range(extra)),
            ignored_distractor=self.ignored_distractor
            + tuple(np.zeros(0, dtype=bool) for _ in range(extra)),
        )

    def with_labels(self, names: Iterable[str]) -> SequenceData:
        """Only the objects whose label is one of ``names`` (case-insensitive). A sequence
        without labels (MOT text) is returned unchanged."""
        if not self.labels:
            return self
        wanted = {n.strip().lower() for n in names}
        keep_ids = np.array(sorted(i for i, n in self.labels.items() if n.lower() in wanted),
                            dtype=np.int64)
        keep = [np.isin(ids, keep_ids) for ids in self.ids]
        return replace(
            self,
            ids=tuple(ids[k] for ids, k in zip(self.ids, keep)),
            boxes=tuple(b[k] for b, k in zip(self.boxes, keep)),
            masks=None if self.masks is None else tuple(
                tuple(m for m, kept in zip(frame, k) if kept) for frame, k in zip(self.masks, keep)
            ),
            labels={i: n for i, n in self.labels.items() if i in set(keep_ids.tolist())},
        )


# ----------------------------------------------------------------------------- loading
def load_sequence(
    path: str | os.PathLike[str], *, ground_truth: bool, convention: str = "mot15",
    name: str | None = None,
) -> SequenceData:
    """Read a MOT text file (``.txt``) or CVAT XML file (``.xml``; other suffixes are
    sniffed). ``convention`` selects which MOT ground-truth rows are scored (see the
    module docstring); it does not affect predictions or XML files."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    name = name or sequence_name(path)
    if path.suffix.lower() == ".xml" or (path.suffix.lower() != ".txt"
                                         and data.lstrip()[:1] == b"<"):
        return read_cvat_xml(data, name=name, source=str(path))
    return read_mot_text(data, ground_truth=ground_truth, convention=convention, name=name,
                         source=str(path))


def sequence_name(path: str | os.PathLike[str]) -> str:
    """The sequence a file belongs to: its stem, or for ``SEQ/gt/gt.txt``, ``SEQ/gt.txt``
    and ``SEQ/annotations.xml`` the folder's name."""
    path = Path(path)
    if path.stem in ("gt", "annotations", "det") and path.parent.name:
        parent = path.parent
        if parent.name == "gt" and parent.parent.name:
            parent = parent.parent
        return parent.name
    return path.stem


def _mot_table(data: bytes, source: str) -> np.ndarray:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a text file") from None
    try:
        table = np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InputError(f"{source}: not a MOTChallenge file ({exc})") from None
    if table.size == 0:
        return np.zeros((0, 10))
    if not 6 <= table.shape[1] <= 10:
        raise InputError(f"{source}: MOT lines need 6 to 10 columns, found {table.shape[1]}")
    if not np.isfinite(table[:, :6]).all():
        raise InputError(f"{source}: frame, id and box columns must be finite numbers")
    frames, ids = table[:, 0], table[:, 1]
    if np.any(frames != np.round(frames)) or np.any(ids != np.round(ids)):
        raise InputError(f"{source}: frame and id columns must be whole numbers")
    if frames.min() < 1:
        raise InputError(f"{source}: frame numbers start at 1, found {int(frames.min())}")
    return table


def read_mot_text(
    data: bytes, *, ground_truth: bool, convention: str = "mot15", name: str = "",
    source: str = "<mot>",
) -> SequenceData:
    """A :class:`SequenceData` from the bytes of a MOTChallenge text file."""
    table = _mot_table(data, source)
    frames = table[:, 0].astype(np.int64) - 1
    ids = table[:, 1].astype(np.int64)
    boxes = np.concatenate([table[:, 2:4], table[:, 2:4] + table[:, 4:6]], axis=1)
    _check_unique(frames, ids, source)
    num_frames = int(frames.max()) + 1 if len(frames) else 0

    scored = np.ones(len(table), dtype=bool)
    distractor = np.zeros(len(table), dtype=bool)
    if ground_truth and table.shape[1] > 6:
        zero_marked = table[:, 6].astype(np.int64) == 0  # TrackEval: conf.astype(int) != 0
        scored &= ~zero_marked
    if ground_truth and convention != "mot15":
        if table.shape[1] < 8:
            raise InputError(f"{source}: {convention.upper()} ground truth needs a class column "
                             "(column 8); use --convention mot15 for files without classes")
        classes = table[:, 7].astype(np.int64)
        bad = np.setdiff1d(np.unique(classes), VALID_CLASSES)
        if len(bad):
            raise InputError(f"{source}: classes {bad.tolist()} are not MOTChallenge classes "
                             f"1-13; is this MOT15 ground truth (use --convention mot15)?")
        scored &= classes == PEDESTRIAN_CLASS
        distractor = np.isin(classes, _DISTRACTORS[convention])

    per_frame = _split_by_frame(frames[scored], ids[scored], boxes[scored], num_frames)
    ignored = ~scored
    order = np.argsort(frames[ignored], kind="stable")
    ig_frames = frames[ignored][order]
    ig_boxes, ig_distractor = boxes[ignored][order], distractor[ignored][order]
    bounds = np.searchsorted(ig_frames, np.arange(num_frames + 1))
    return SequenceData(
        name=name, num_frames=num_frames, ids=per_frame[0], boxes=per_frame[1],
        ignored_boxes=tuple(ig_boxes[a:b] for a, b in zip(bounds[:-1], bounds[1:])),
        ignored_distractor=tuple(ig_distractor[a:b] for a, b in zip(bounds[:-1], bounds[1:])),
        source=source,
    )


def _check_unique(frames: np.ndarray, ids: np.ndarray, source: str) -> None:
    order = np.lexsort((ids, frames))
    f, i = frames[order], ids[order]
    same = (np.diff(f) == 0) & (np.diff(i) == 0)
    if same.any():
        k = int(np.argmax(same))
        raise InputError(f"{source}: id {int(i[k])} appears twice on frame {int(f[k]) + 1}")


def _split_by_frame(
    frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray, num_frames: int,
    masks: list[ObjectMask | None] | None = None,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[tuple, ...] | None]:
    order = np.lexsort((ids, frames))
    frames, ids, boxes = frames[order], ids[order], boxes[order].reshape(-1, 4)
    bounds = np.searchsorted(frames, np.arange(num_frames + 1))
    spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    per_ids = tuple(ids[a:b].astype(np.int64) for a, b in spans)
    per_boxes = tuple(boxes[a:b].astype(np.float64) for a, b in spans)
    per_masks = None
    if masks is not None:
        ordered = [masks[k] for k in order.tolist()]
        per_masks = tuple(tuple(ordered[a:b]) for a, b in spans)
    return per_ids, per_boxes, per_masks


# -------------------------------------------------------------------------------- CVAT
@dataclass
class _Rows:
    frames: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    masks: list[ObjectMask | None] = field(default_factory=list)

    def add(self, frame: int, object_id: int, box, mask: ObjectMask | None) -> None:
        self.frames.append(frame)
        self.ids.append(object_id)
        self.boxes.append(tuple(float(v) for v in box))
        self.masks.append(mask)


def _int_attr(el: ET.Element, key: str, source: str, default: int | None = None) -> int:
    value = el.get(key)
    if value is None:
        if default is not None:
            return default
        raise InputError(f"{source}: <{el.tag}> lacks the {key!r} attribute")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{source}: <{el.tag} {key}={value!r}> is not a whole number") from None


def _float_attr(el: ET.Element, key: str, source: str) -> float:
    value = el.get(key)
    if value is None:
        raise InputError(f"{source}: <{el.tag}> lacks the {key!r} attribute")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{source}: <{el.tag} {key}={value!r}> is not a number") from None
    if not np.isfinite(number):
        raise InputError(f"{source}: <{el.tag} {key}={value!r}> is not finite")
    return number


def _meta(root: ET.Element, source: str) -> tuple[int | None, tuple[int, int] | None]:
    """(frames the task or job spans, (height, width)) from ``<meta>``, where given."""
    unit = meta_unit(root, source)
    if unit is None:
        return None, None
    num_frames = None
    stop = (unit.findtext("stop_frame") or "").strip()
    size = (unit.findtext("size") or "").strip()
    try:
        if stop:
            num_frames = int(stop) + 1
        elif size:
            num_frames = int(size)
    except ValueError:
        raise InputError(f"{source}: <meta> has a bad frame count") from None
    image_size = None
    width = (unit.findtext("original_size/width") or "").strip()
    height = (unit.findtext("original_size/height") or "").strip()
    if width and height:
        try:
            image_size = (int(height), int(width))
        except ValueError:
            raise InputError(f"{source}: <original_size> is not whole numbers") from None
    return num_frames, image_size


def _box_of(el: ET.Element, source: str) -> tuple[float, float, float, float]:
    rotation = float(el.get("rotation", "0") or 0)
    if rotation % 360 != 0:
        raise InputError(f"{source}: rotated boxes (rotation={el.get('rotation')}) are not "
                         "supported")
    box = tuple(_float_attr(el, k, source) for k in ("xtl", "ytl", "xbr", "ybr"))
    return box  # type: ignore[return-value]


def _polygon_points(el: ET.Element, source: str) -> np.ndarray:
    text = el.get("points")
    if not text:
        raise InputError(f"{source}: <{el.tag}> lacks the 'points' attribute")
    try:
        points = np.array([[float(v) for v in pair.split(",")] for pair in text.split(";")],
                          dtype=np.float64)
    except ValueError:
        raise InputError(f"{source}: <{el.tag} points={text[:40]!r}...> is malformed") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise InputError(f"{source}: a polygon needs at least three x,y points")
    if not np.isfinite(points).all():
        raise InputError(f"{source}: polygon points must be finite")
    return points


def _polygon_mask(points: np.ndarray, image_size: tuple[int, int] | None) -> ObjectMask:
    """Rasterise (as :func:`autotrack.masks.polygons_to_masks`, vertices rounded) over the
    polygon's own box, clipped to the image when its size is known."""
    corners = np.round(points)
    x0, y0 = (int(v) for v in corners.min(axis=0))
    x1, y1 = (int(v) + 1 for v in corners.max(axis=0))
    if image_size is not None:
        height, width = image_size
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return ObjectMask(max(x0, 0), max(y0, 0), np.zeros((0, 0), dtype=bool))
    bitmap = polygons_to_masks([points - [x0, y0]], (y1 - y0, x1 - x0))[0]
    return ObjectMask(x0, y0, bitmap)


def _cvat_mask(el: ET.Element, source: str, image_size: tuple[int, int] | None) -> ObjectMask:
    """CVAT's ``<mask rle="r0, r1, ..." left top width height>``."""
    left, top = _int_attr(el, "left", source), _int_attr(el, "top", source)
    width, height = _int_attr(el, "width", source), _int_attr(el, "height", source)
    rle = el.get("rle")
    if rle is None:
        raise InputError(f"{source}: <mask> lacks the 'rle' attribute")
    if width <= 0 or height <= 0 or left < 0 or top < 0:
        raise InputError(f"{source}: <mask> box {left},{top} {width}x{height} is invalid")
    if image_size is not None and (left + width > image_size[1] or top + height > image_size[0]):
        raise InputError(f"{source}: <mask> box {left},{top} {width}x{height} lies outside the "
                         f"{image_size[1]}x{image_size[0]} image")
    try:
        runs = [int(v) for v in rle.replace(" ", "").split(",") if v != ""]
        bitmap = decode_cvat_mask([*runs, 0, 0, width - 1, height - 1], height, width)
    except ValueError:
        raise InputError(f"{source}: <mask> run lengths do not cover its "
                         f"{width}x{height} box") from None
    return ObjectMask(left, top, bitmap)


def _shape_value(el: ET.Element, source: str, image_size):
    """(box, mask) of a box, polygon or mask element."""
    if el.tag == "box":
        return _box_of(el, source), None
    if el.tag == "polygon":
        points = _polygon_points(el, source)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        return (x0, y0, x1, y1), _polygon_mask(points, image_size)
    mask = _cvat_mask(el, source, image_size)
    return mask.box(), mask


def _united(box_a, mask_a: ObjectMask | None, box_b, mask_b: ObjectMask | None):
    """(box, mask) of two shapes of one object on one frame: the union of both."""
    box = (min(box_a[0], box_b[0]), min(box_a[1], box_b[1]),
           max(box_a[2], box_b[2]), max(box_a[3], box_b[3]))
    masks = [m for m in (mask_a, mask_b) if m is not None and m.bitmap.size]
    if len(masks) < 2:
        return box, masks[0] if masks else (mask_a or mask_b)
    left = min(m.left for m in masks)
    top = min(m.top for m in masks)
    right = max(m.left + m.bitmap.shape[1] for m in masks)
    bottom = max(m.top + m.bitmap.shape[0] for m in masks)
    bitmap = np.zeros((bottom - top, right - left), dtype=bool)
    for m in masks:
        h, w = m.bitmap.shape
        bitmap[m.top - top:m.top - top + h, m.left - left:m.left - left + w] |= m.bitmap
    return box, ObjectMask(left, top, bitmap)


def _expand_track(
    track: ET.Element, track_id: int, num_frames: int | None, image_size, rows: _Rows,
    source: str,
) -> int:
    """Add a track's per-frame objects to ``rows``; returns its last frame reached."""
    shapes = [el for el in track if el.tag in _AREA_SHAPES]
    if not shapes:
        return -1
    kinds = {el.tag for el in shapes}
    if len(kinds) > 1:
        raise InputError(f"{source}: track {track_id} mixes {', '.join(sorted(kinds))} shapes")
    keyframes = [el for el in shapes if el.get("keyframe", "1") != "0"]
    frames = [_int_attr(el, "frame", source) for el in keyframes]
    order = np.argsort(frames, kind="stable")
    keyframes = [keyframes[i] for i in order]
    frames = [frames[i] for i in order]
    if len(set(frames)) != len(frames):
        raise InputError(f"{source}: track {track_id} has two keyframes on one frame")
    if frames and frames[0] < 0:
        raise InputError(f"{source}: track {track_id} has a keyframe on frame {frames[0]}")
    outside = [el.get("outside", "0") == "1" for el in keyframes]
    visible_frames = [f for f, out in zip(frames, outside) if not out]
    if not visible_frames:
        return -1
    if num_frames is not None and visible_frames[-1] >= num_frames:
        raise InputError(f"{source}: track {track_id} shows an object on frame "
                         f"{visible_frames[-1]} but the task has {num_frames} frames")
    # The last visible keyframe is held to the task's end (or, without <meta>, kept alone).
    end = num_frames if num_frames is not None else visible_frames[-1] + 1
    kind = keyframes[0].tag
    if kind == "box":
        # An outside keyframe's coordinates matter: CVAT interpolates towards them.
        kfs = [Keyframe(f, _box_of(el, source), out)
               for f, el, out in zip(frames, keyframes, outside)]
        query = np.arange(frames[0], end)
        boxes, visible = interpolate(kfs, query)
        for frame, box in zip(query[visible].tolist(), boxes[visible]):
            rows.add(frame, track_id, box, None)
        return end - 1
    for k, (frame, el, out) in enumerate(zip(frames, keyframes, outside)):
        if out:
            continue
        stop = frames[k + 1] if k + 1 < len(frames) else end
        if k + 1 < len(frames) and stop - frame > 1 and not (
                kind == "polygon" and np.array_equal(_polygon_points(el, source),
                                                     _polygon_points(keyframes[k + 1], source))):
            raise InputError(
                f"{source}: {kind} track {track_id} needs interpolation between keyframes "
                f"{frame} and {stop}; only box tracks are interpolated (put a {kind} keyframe "
                "on every frame)")
        box, mask = _shape_value(el, source, image_size)
        for f in range(frame, min(stop, end)):
            rows.add(f, track_id, box, mask)
    return end - 1


def read_cvat_xml(data: bytes, *, name: str = "", source: str = "<xml>") -> SequenceData:
    """A :class:`SequenceData` from the bytes of a CVAT for video/images 1.1 XML file."""
    root = cvat_root(data, source)
    num_frames, image_size = _meta(root, source)
    declared_frames = num_frames
    rows = _Rows()
    labels: dict[int, str] = {}
    skipped = 0
    last_frame = -1

    tracks = root.findall("track")
    seen: set[int] = set()
    for position, track in enumerate(tracks):
        track_id = _int_attr(track, "id", source, default=position)
        if track_id in seen:
            raise InputError(f"{source}: two tracks have id {track_id}")
        seen.add(track_id)
        labels[track_id] = track.get("label", "")
        skipped += sum(1 for el in track if el.tag in _OTHER_SHAPES)
        last_frame = max(last_frame,
                         _expand_track(track, track_id, num_frames, image_size, rows, source))

    next_id = max(seen, default=-1) + 1
    group_ids: dict[int, int] = {}
    grouped_rows: dict[tuple[int, int], int] = {}  # (frame, object id) -> index in rows
    for image in root.findall("image"):
        frame = _int_attr(image, "id", source)
        if frame < 0 or (num_frames is not None and frame >= num_frames):
            raise InputError(f"{source}: <image id={frame}> is outside the task's frames")
        if image_size is None and image.get("width") and image.get("height"):
            image_size = (_int_attr(image, "height", source), _int_attr(image, "width", source))
        for el in image:
            if el.tag in _OTHER_SHAPES:
                skipped += 1
                continue
            if el.tag not in _AREA_SHAPES:
                continue
            box, mask = _shape_value(el, source, image_size)
            group = _int_attr(el, "group_id", source, default=0)
            if group > 0:
                if group not in group_ids:
                    group_ids[group] = next_id
                    labels[next_id] = el.get("label", "")
                    next_id += 1
                object_id = group_ids[group]
                row = grouped_rows.get((frame, object_id))
                if row is not None:
                    rows.boxes[row], rows.masks[row] = _united(rows.boxes[row], rows.masks[row],
                                                               box, mask)
                    continue
                grouped_rows[(frame, object_id)] = len(rows.frames)
                rows.add(frame, object_id, box, mask)
                continue
            rows.add(frame, next_id, box, mask)
            labels[next_id] = el.get("label", "")
            next_id += 1
        last_frame = max(last_frame, frame)

    if num_frames is None:
        num_frames = max(last_frame, max(rows.frames, default=-1)) + 1
    has_masks = any(m is not None for m in rows.masks)
    ids, boxes, masks = _split_by_frame(
        np.asarray(rows.frames, dtype=np.int64), np.asarray(rows.ids, dtype=np.int64),
        np.asarray(rows.boxes, dtype=np.float64).reshape(-1, 4), num_frames,
        rows.masks if has_masks else None,
    )
    return SequenceData(name=name, num_frames=num_frames, ids=ids, boxes=boxes, masks=masks,
                        image_size=image_size, labels=labels, source=source,
                        skipped_shapes=skipped, declared_frames=declared_frames)
