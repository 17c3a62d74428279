"""An Ultralytics dataset from reviewed CVAT annotations: boxes, frames, split, layout.

Both doors (``autotrack task export`` over the REST API, ``autotrack export`` on CVAT XML and
its video) hand this module the annotations in CVAT's JSON form (``LabeledData``: tracks of
``TrackedShape`` keyframes, standalone ``shapes``), one :class:`Piece` per reviewed stretch
of frames (a job), and a function that reads chosen frames. It does the rest the same way
for both:

**Boxes.** A track shows on a frame what CVAT's interpolation shows there
(:func:`autotrack.merge.cvat_tracks.shape_at`, after CVAT's ``get_interpolated_shapes``):
boxes move linearly between keyframes, an ``outside`` keyframe hides the object until the
next visible one, the last visible keyframe holds to the end of the piece. Rectangles give
their box (a rotated one, the box around its corners), polygons and masks their bounding
box (a mask's box is the pixel box CVAT stores after its runs, right/bottom inclusive).
Tags, ellipses, polylines, points, cuboids and skeletons are skipped and counted. A box is
clipped to the frame; one with no area left inside it is dropped (counted).

**Frames** (:func:`candidate_frames`): every keyframe (a frame where a track has a keyframe,
visible or outside, or a standalone shape lies), plus every frame whose number is a multiple
of ``stride``, inside the reviewed pieces, deleted frames left out. A frame two pieces share
(jobs overlap) is taken from the first piece. Near-duplicates are dropped while the frames
are read (:class:`NearDuplicates`): a frame is dropped when, against the last frame kept
before it, every object has a partner of the same class whose box corners all moved less
than ``duplicate_px`` (2 px) and fewer than 0.5% of the pixels of a 128-pixel-wide grey
thumbnail changed by more than 16 grey levels (on vtest.avi, neighbouring frames change
0.7-2.5% of them; a re-encoded copy of one frame 0%).

**Split** (:func:`split_frames`): time is cut into blocks of ``block`` frames (frame //
block, per source); blocks go to val in a seeded random order while that brings the val
share closer to ``val`` (at least one block each way); then every val frame within
``guard`` frames of a train frame is dropped, so no two frames closer than ``guard + 1``
straddle the split.

**Layout** (:class:`DatasetWriter`): ``data.yaml`` (``path``, ``train``, ``val``,
``names``), ``images/{train,val}/*.jpg``, ``labels/{train,val}/*.txt`` (one line per box:
``class cx cy w h``, normalized to the image, 6 decimals; an empty file for a frame with no
object), ``manifest.json`` (sources, classes, options, split, every frame). It is written in
a hidden folder next to the output and renamed into place at the end, so a failure (a frame
that cannot be read, a full disk) leaves nothing that looks complete.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autotrack.errors import InputError
from autotrack.merge.cvat_tracks import shape_at

BOX_TYPES = frozenset({"rectangle", "polygon", "mask"})
# Label types that can hold a box-giving shape; the others are not classes of the dataset.
CLASS_LABEL_TYPES = frozenset({"any", "rectangle", "polygon", "mask"})
SPLITS = ("train", "val")
THUMB_WIDTH = 128
THUMB_LEVELS = 16  # grey levels a thumbnail pixel must change by to count as changed
THUMB_CHANGED = 0.005  # at most this share of changed thumbnail pixels: "barely differ"
MANIFEST_VERSION = 1

FrameReader = Callable[[Sequence[int]], Iterable[tuple[int, np.ndarray]]]


# --- options ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetOptions:
    stride: int = 10
    val: float = 0.2
    block: int = 100
    guard: int = 10
    seed: int = 0
    duplicate_px: float = 2.0  # 0: keep near-duplicates
    classes: tuple[str, ...] | None = None
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise InputError(f"--stride must be at least 1, got {self.stride}")
        if not 0.0 <= self.val < 1.0:
            raise InputError(f"--val must lie in [0, 1), got {self.val}")
        if self.block < 1:
            raise InputError(f"--block must be at least 1 frame, got {self.block}")
        if self.guard < 0:
            raise InputError(f"--guard must be 0 or more frames, got {self.guard}")
        if not (self.duplicate_px >= 0 and math.isfinite(self.duplicate_px)):
            raise InputError(f"--duplicate-px must be 0 or more, got {self.duplicate_px}")
        if self.guard >= self.block and self.val > 0:
            raise InputError(f"--guard {self.guard} must be below --block {self.block}: it "
                             "would drop whole val blocks")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DatasetOptions:
        classes = None
        if args.classes:
            classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
        return cls(stride=args.stride, val=args.val, block=args.block, guard=args.guard,
                   seed=args.seed, duplicate_px=args.duplicate_px, classes=classes or None)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both doors share: output, frame choice, split, classes."""
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="the dataset folder to create (must not exist yet)")
    group = parser.add_argument_group("dataset")
    group.add_argument("--classes", metavar="NAMES",
                       help="comma-separated label names to keep as classes (default: every "
                            "label that can hold boxes, polygons or masks)")
    group.add_argument("--stride", type=int, default=DatasetOptions.stride, metavar="N",
                       help="besides every keyframe, take frames whose number is a multiple "
                            f"of N (default {DatasetOptions.stride})")
    group.add_argument("--duplicate-px", type=float, default=DatasetOptions.duplicate_px,
                       metavar="PX", help="drop a frame whose boxes all moved less than PX "
                                          "since the last kept frame and whose pixels barely "
                                          "changed (default 2; 0 keeps every frame)")
    group.add_argument("--val", type=float, default=DatasetOptions.val, metavar="FRACTION",
                       help=f"share of frames for validation (default {DatasetOptions.val})")
    group.add_argument("--block", type=int, default=DatasetOptions.block, metavar="N",
                       help="the split assigns contiguous blocks of N frames (default "
                            f"{DatasetOptions.block})")
    group.add_argument("--guard", type=int, default=DatasetOptions.guard, metavar="N",
                       help="drop val frames within N frames of a train frame (default "
                            f"{DatasetOptions.guard})")
    group.add_argument("--seed", type=int, default=DatasetOptions.seed,
                       help="seed of the val block choice (default 0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


# --- sources ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    """One reviewed stretch of a source (a job): its annotations in CVAT's JSON form, as that
    job stores them, and its frames ``first``-``last`` (inclusive)."""

    name: str
    first: int
    last: int
    annotations: Mapping[str, Any]


@dataclass
class Source:
    """One video (a task, or an XML file and its video) and its reviewed pieces."""

    name: str  # for messages: "task 12 'street'", "vtest.avi"
    key: str  # prefix of its image file names
    labels: Mapping[int, str]  # label id -> name
    pieces: list[Piece]
    deleted: frozenset[int] = frozenset()
    about: dict[str, Any] = field(default_factory=dict)  # for the manifest


def class_names(label_lists: Iterable[Sequence[tuple[str, str]]],
                wanted: Sequence[str] | None = None) -> list[str]:
    """Classes from labels ``(name, type)``: those that can hold boxes, polygons or masks,
    in the order the labels come (first appearance across sources); ``wanted`` keeps those
    named (InputError for a name no label has)."""
    names: list[str] = []
    others: list[str] = []
    for labels in label_lists:
        for name, kind in labels:
            if kind in CLASS_LABEL_TYPES:
                if name not in names:
                    names.append(name)
            elif name not in others:
                others.append(name)
    if not wanted:
        if not names:
            raise InputError("no label can hold boxes, polygons or masks (labels: "
                             f"{', '.join(map(repr, others)) or 'none'})")
        return names
    for name in wanted:
        if name not in names:
            why = (f"label {name!r} cannot hold boxes" if name in others
                   else f"no label is named {name!r}")
            raise InputError(f"--classes {name}: {why} (labels: "
                             f"{', '.join(map(repr, names + others))})")
    return [name for name in names if name in wanted]


# --- boxes -----------------------------------------------------------------------------------

def shape_box(shape: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The xyxy box of a rectangle, polygon or mask shape in CVAT's JSON form; None for any
    other type."""
    kind = shape.get("type")
    points = [float(p) for p in shape.get("points") or []]
    if kind == "rectangle" and len(points) >= 4:
        x1, y1, x2, y2 = points[:4]
        angle = math.radians(float(shape.get("rotation") or 0.0))
        if angle:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            half_w = (abs((x2 - x1) * math.cos(angle)) + abs((y2 - y1) * math.sin(angle))) / 2
            half_h = (abs((x2 - x1) * math.sin(angle)) + abs((y2 - y1) * math.cos(angle))) / 2
            return cx - half_w, cy - half_h, cx + half_w, cy + half_h
        return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
    if kind == "polygon" and len(points) >= 2:
        xy = np.asarray(points[: len(points) // 2 * 2]).reshape(-1, 2)
        return (*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist())
    if kind == "mask" and len(points) >= 4:
        left, top, right, bottom = points[-4:]
        return left, top, right + 1, bottom + 1
    return None


@dataclass
class Candidate:
    """A frame that may go into the dataset, and what it shows."""

    source: str  # Source.key
    frame: int
    keyframe: bool
    classes: np.ndarray  # (N,) int
    boxes: np.ndarray  # (N, 4) xyxy pixels, not clipped


@dataclass
class Skipped:
    """Objects left out, by reason (for the summary and the manifest)."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] += n

    def text(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))


def _kind(item: Mapping[str, Any]) -> str | None:
    shapes = item.get("shapes")
    if shapes is not None:
        return str(shapes[0].get("type")) if shapes else None
    return str(item.get("type"))


def piece_frames(source: Source) -> list[list[int]]:
    """Each piece's frames: its span, deleted frames and frames of earlier pieces left out."""
    taken: set[int] = set()
    out = []
    for piece in source.pieces:
        frames = [f for f in range(piece.first, piece.last + 1)
                  if f not in source.deleted and f not in taken]
        taken.update(frames)
        out.append(frames)
    return out


def _exported(item: Mapping[str, Any], labels: Mapping[int, str],
              class_index: Mapping[str, int]) -> bool:
    return (_kind(item) in BOX_TYPES and not item.get("elements")
            and labels.get(int(item["label_id"])) in class_index)


def keyframes_of(annotations: Mapping[str, Any], labels: Mapping[int, str],
                 class_index: Mapping[str, int]) -> set[int]:
    """Frames a person (or a tool) placed an exported object on: the keyframes (visible or
    outside) of its tracks, its standalone shapes."""
    frames = {int(s["frame"]) for t in annotations.get("tracks") or []
              if _exported(t, labels, class_index) for s in t.get("shapes") or []}
    frames.update(int(s["frame"]) for s in annotations.get("shapes") or []
                  if _exported(s, labels, class_index))
    return frames


def candidate_frames(source: Source, stride: int,
                     class_index: Mapping[str, int]) -> list[tuple[int, bool, int]]:
    """``(frame, is keyframe, piece index)`` in frame order: every keyframe of an exported
    object plus every multiple of ``stride``, inside the pieces (each piece's keyframes count
    on its own frames only)."""
    chosen: dict[int, tuple[bool, int]] = {}
    for index, (piece, frames) in enumerate(zip(source.pieces, piece_frames(source))):
        keys = keyframes_of(piece.annotations, source.labels, class_index)
        for frame in frames:
            key = frame in keys
            if key or frame % stride == 0:
                chosen[frame] = (key, index)
    return [(f, *chosen[f]) for f in sorted(chosen)]


def frame_objects(annotations: Mapping[str, Any], labels: Mapping[int, str],
                  class_index: Mapping[str, int], frames: Sequence[int],
                  skipped: Skipped | None = None) -> dict[int, list[tuple[int, tuple]]]:
    """Frame -> ``[(class, xyxy box), ...]`` on ``frames``: tracks as CVAT shows them there
    (:func:`shape_at`), standalone shapes on their frame."""
    wanted = set(frames)
    out: dict[int, list[tuple[int, tuple]]] = {f: [] for f in frames}
    skipped = skipped if skipped is not None else Skipped()
    skipped.add("tags", len(annotations.get("tags") or []))
    for key in ("tracks", "shapes"):
        for item in annotations.get(key) or []:
            kind = _kind(item)
            name = labels.get(int(item["label_id"]))
            if kind not in BOX_TYPES or item.get("elements"):
                skipped.add(f"{kind or 'empty'} {key}")
                continue
            if name not in class_index:
                skipped.add(f"{key} of other labels")
                continue
            cls = class_index[name]
            if key == "shapes":
                frame = int(item["frame"])
                box = shape_box(item)
                if frame in wanted and box is not None and not item.get("outside"):
                    out[frame].append((cls, box))
                continue
            first = min(int(s["frame"]) for s in item["shapes"])
            for frame in frames:
                if frame < first:
                    continue
                shown = shape_at(item, frame)
                box = shape_box(shown) if shown is not None else None
                if box is not None:
                    out[frame].append((cls, box))
    return out


def plan_source(source: Source, class_index: Mapping[str, int], stride: int,
                skipped: Skipped | None = None) -> list[Candidate]:
    """The candidate frames of ``source`` with their boxes (before near-duplicates and the
    split)."""
    chosen = candidate_frames(source, stride, class_index)
    candidates = []
    for index, piece in enumerate(source.pieces):
        frames = [f for f, _, i in chosen if i == index]
        if not frames:
            continue
        objects = frame_objects(piece.annotations, source.labels, class_index, frames, skipped)
        keys = {f for f, key, i in chosen if i == index and key}
        for frame in frames:
            items = objects[frame]
            candidates.append(Candidate(
                source.key, frame, frame in keys,
                np.array([c for c, _ in items], dtype=np.int64),
                np.array([b for _, b in items], dtype=np.float64).reshape(-1, 4)))
    return sorted(candidates, key=lambda c: c.frame)


# --- near-duplicates -------------------------------------------------------------------------

def thumbnail(image: np.ndarray) -> np.ndarray:
    """A grey thumbnail THUMB_WIDTH pixels wide (area-averaged), int16."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    height = max(1, round(grey.shape[0] * THUMB_WIDTH / grey.shape[1]))
    return cv2.resize(grey, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA).astype(np.int16)


def boxes_still(a: Candidate, b: Candidate, tolerance: float) -> bool:
    """Every object of ``a`` has a partner of the same class in ``b`` (one to one) whose box
    corners all moved less than ``tolerance`` pixels."""
    if sorted(a.classes.tolist()) != sorted(b.classes.tolist()):
        return False
    from scipy.optimize import linear_sum_assignment

    for cls in np.unique(a.classes):
        boxes_a, boxes_b = a.boxes[a.classes == cls], b.boxes[b.classes == cls]
        cost = np.abs(boxes_a[:, None, :] - boxes_b[None, :, :]).max(axis=2)
        rows, cols = linear_sum_assignment(cost)
        if (cost[rows, cols] >= tolerance).any():
            return False
    return True


def pixels_barely_differ(a: np.ndarray, b: np.ndarray) -> bool:
    """Thumbnails of the same size of which under THUMB_CHANGED of the pixels changed by
    more than THUMB_LEVELS grey levels."""
    if a.shape != b.shape:
        return False
    return float((np.abs(a - b) > THUMB_LEVELS).mean()) < THUMB_CHANGED


class NearDuplicates:
    """Decides, frame by frame in time order, whether a frame repeats the last one kept."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._last: Candidate | None = None
        self._thumb: np.ndarray | None = None

    def repeats(self, candidate: Candidate, image: np.ndarray) -> bool:
        """True (drop it) or False (keep it, and compare later frames with it)."""
        if self.tolerance <= 0:
            return False
        last = self._last
        if last is not None and last.source == candidate.source and \
                boxes_still(last, candidate, self.tolerance):
            if pixels_barely_differ(self._thumb, thumbnail(image)):  # type: ignore[arg-type]
                return True
        self._last, self._thumb = candidate, thumbnail(image)
        return False


# --- split -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitPlan:
    split: dict[tuple[str, int], str]  # (source key, frame) -> "train" or "val"
    val_blocks: tuple[tuple[str, int], ...]  # (source key, block index)
    guard_dropped: tuple[tuple[str, int], ...]  # val frames dropped next to train frames


def split_frames(frames: Iterable[tuple[str, int]], *, val: float, block: int, guard: int,
                 seed: int) -> SplitPlan:
    """Assign frames to train and val by contiguous blocks of ``block`` frames (module
    docstring); InputError when a split is asked for and the frames fill only one block."""
    frames = sorted(set(frames))
    blocks = Counter((key, frame // block) for key, frame in frames)
    if val <= 0 or not frames:
        return SplitPlan({f: "train" for f in frames}, (), ())
    if len(blocks) < 2:
        raise InputError(f"the {len(frames)} chosen frames lie in one block of {block} frames: "
                         "nothing to split by time; lower --block or pass --val 0")
    order = sorted(blocks)
    rng = np.random.default_rng(seed)
    target = val * len(frames)
    chosen: list[tuple[str, int]] = []
    total = 0
    for i in rng.permutation(len(order)).tolist():
        n = blocks[order[i]]
        if not chosen or abs(total + n - target) < abs(total - target):
            chosen.append(order[i])
            total += n
    if len(chosen) == len(order):
        total -= blocks[chosen.pop()]
    val_blocks = set(chosen)
    split = {(key, f): "val" if (key, f // block) in val_blocks else "train"
             for key, f in frames}
    dropped = []
    train_by_key: dict[str, np.ndarray] = {}
    for key in {k for k, _ in frames}:
        train_by_key[key] = np.array(sorted(f for k, f in frames
                                            if k == key and split[(k, f)] == "train"))
    for key, frame in frames:
        if split[(key, frame)] != "val":
            continue
        train = train_by_key[key]
        if len(train) and guard > 0:
            at = np.searchsorted(train, frame)
            near = [train[j] for j in (at - 1, at) if 0 <= j < len(train)]
            if min(abs(int(t) - frame) for t in near) <= guard:
                dropped.append((key, frame))
    for item in dropped:
        del split[item]
    return SplitPlan(split, tuple(sorted(val_blocks)), tuple(dropped))


# --- the layout ------------------------------------------------------------------------------

def yolo_lines(classes: np.ndarray, boxes: np.ndarray, width: int,
               height: int) -> tuple[list[str], int]:
    """YOLO label lines (``class cx cy w h``, normalized, 6 decimals) of boxes clipped to the
    image, and how many boxes had no area inside it (left out)."""
    lines = []
    dropped = 0
    for cls, (x1, y1, x2, y2) in zip(classes.tolist(), boxes.tolist()):
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            dropped += 1
            continue
        lines.append(f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return lines, dropped


def data_yaml(path: Path, names: Sequence[str], val_dir: str) -> str:
    """Ultralytics' dataset file; strings as JSON strings (valid YAML double-quoted)."""
    lines = [f"path: {json.dumps(str(path))}", "train: images/train",
             f"val: {val_dir}", "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)]
    return "\n".join(lines) + "\n"


class DatasetWriter:
    """Writes the layout into a hidden folder beside ``output``; :meth:`finish` renames it
    into place. Used as a context manager: on any error the folder is removed, and an
    ``OSError`` (a full disk, no permission) becomes one InputError line."""

    def __init__(self, output: str | os.PathLike[str], names: Sequence[str], *,
                 jpeg_quality: int = 95) -> None:
        self.output = Path(output).absolute()
        self.names = list(names)
        self.jpeg_quality = jpeg_quality
        if self.output.exists():
            raise InputError(f"{output} already exists; give a new folder to -o (a dataset "
                             "is never written over another)")
        if not self.output.parent.is_dir():
            raise InputError(f"{self.output.parent}: the folder for -o does not exist")
        self.temp: Path | None = None
        self.boxes_outside = 0
        self.class_counts: Counter = Counter()  # class index -> boxes written

    def __enter__(self) -> DatasetWriter:
        try:
            self.temp = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.partial-",
                                              dir=self.output.parent))
            for kind in ("images", "labels"):
                for split in SPLITS:
                    (self.temp / kind / split).mkdir(parents=True)
        except OSError as exc:
            self.discard()
            raise self._error(exc) from None
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if kind is not None:
            self.discard()
        if isinstance(exc, OSError):
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> InputError:
        reason = exc.strerror or str(exc)
        return InputError(f"cannot write the dataset {self.output}: {reason}"
                          f"{f' ({exc.filename})' if exc.filename else ''}; nothing was left "
                          "behind")

    def discard(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None

    def add(self, split: str, stem: str, image: np.ndarray, classes: np.ndarray,
            boxes: np.ndarray) -> dict[str, Any]:
        """One frame: its JPEG and its label file. Returns its manifest row."""
        assert self.temp is not None, "use DatasetWriter as a context manager"
        height, width = image.shape[:2]
        lines, dropped = yolo_lines(classes, boxes, width, height)
        self.boxes_outside += dropped
        self.class_counts.update(int(line.split(" ", 1)[0]) for line in lines)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise InputError(f"cannot encode frame {stem} as JPEG")
        image_path = f"images/{split}/{stem}.jpg"
        _write_bytes(self.temp / image_path, jpeg.tobytes())
        _write_bytes(self.temp / f"labels/{split}/{stem}.txt",
                     "".join(line + "\n" for line in lines).encode())
        return {"image": image_path, "split": split, "boxes": len(lines),
                "width": int(width), "height": int(height)}

    def finish(self, manifest: Mapping[str, Any], *, val_empty: bool) -> Path:
        """``data.yaml`` and ``manifest.json``, then the rename into place."""
        assert self.temp is not None, "use DatasetWriter as a context manager"
        val_dir = "images/train" if val_empty else "images/val"
        _write_bytes(self.temp / "data.yaml",
                     data_yaml(self.output, self.names, val_dir).encode("utf-8"))
        _write_bytes(self.temp / "manifest.json",
                     (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
        os.rename(self.temp, self.output)
        self.temp = None
        return self.output


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


# --- the whole step --------------------------------------------------------------------------

@dataclass
class DatasetResult:
    output: Path
    frames: Counter  # split -> frames written
    boxes: Counter  # class name -> boxes written
    candidates: int
    keyframes: int
    near_duplicates: int
    guard_dropped: int
    boxes_outside: int
    skipped: Skipped

    def summary(self) -> str:
        total = sum(self.frames.values())
        per_class = ", ".join(f"{name} {n}" for name, n in self.boxes.most_common()) or "none"
        text = (f"wrote {self.output}: {total} frames ({self.frames['train']} train, "
                f"{self.frames['val']} val) of {self.candidates} chosen ({self.keyframes} "
                f"keyframes); dropped {self.near_duplicates} near-duplicates and "
                f"{self.guard_dropped} frames of the guard band; boxes: {per_class}")
        if self.boxes_outside:
            text += f"; {self.boxes_outside} boxes lay outside their frame (left out)"
        if self.skipped.counts:
            text += f"; not boxes, left out: {self.skipped.text()}"
        return text


def build_dataset(sources: Sequence[Source], readers: Mapping[str, FrameReader],
                  names: Sequence[str], options: DatasetOptions, output: str | os.PathLike[str],
                  *, on_frame: Callable[[], None] | None = None) -> DatasetResult:
    """Choose, split, read and write (module docstring). ``readers[source.key]`` yields
    ``(frame, BGR image)`` for the frames it is given, in order; it may raise InputError
    (an unreadable frame), and a frame it does not yield is an error."""
    writer = DatasetWriter(output, names, jpeg_quality=options.jpeg_quality)  # -o checked
    class_index = {name: i for i, name in enumerate(names)}
    skipped = Skipped()
    candidates = [c for s in sources for c in plan_source(s, class_index, options.stride,
                                                           skipped)]
    if not candidates:
        raise InputError("the reviewed frames are all deleted: nothing to export")
    plan = split_frames(((c.source, c.frame) for c in candidates), val=options.val,
                        block=options.block, guard=options.guard, seed=options.seed)
    rows: list[dict[str, Any]] = []
    frames: Counter = Counter()
    duplicates: list[list[Any]] = []
    with writer:
        for source in sources:
            mine = [c for c in candidates if c.source == source.key
                    and (c.source, c.frame) in plan.split]
            if not mine:
                continue
            by_frame = {c.frame: c for c in mine}
            check = NearDuplicates(options.duplicate_px)
            expected = iter(sorted(by_frame))
            for frame, image in readers[source.key](sorted(by_frame)):
                if frame != next(expected, None):
                    raise InputError(f"{source.name}: frame {frame} came out of order")
                candidate = by_frame[frame]
                if on_frame is not None:
                    on_frame()
                if check.repeats(candidate, image):
                    duplicates.append([source.key, frame])
                    continue
                split = plan.split[(source.key, frame)]
                row = writer.add(split, f"{source.key}_{frame:06d}", image, candidate.classes,
                                 candidate.boxes)
                row.update(source=source.key, frame=frame, keyframe=candidate.keyframe)
                rows.append(row)
                frames[split] += 1
            missing = next(expected, None)
            if missing is not None:
                raise InputError(f"{source.name}: frame {missing} could not be read")
        boxes = Counter({names[i]: n for i, n in writer.class_counts.items()})
        manifest = {
            "version": MANIFEST_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sources": [{"key": s.key, "name": s.name, **s.about,
                         "pieces": [{"name": p.name, "frames": [p.first, p.last]}
                                    for p in s.pieces]} for s in sources],
            "names": list(names),
            "options": {k: v for k, v in asdict(options).items() if k != "classes"},
            "selection": {"rule": "every keyframe plus every frame that is a multiple of "
                                  "stride; near-duplicates dropped",
                          "candidates": len(candidates),
                          "keyframes": sum(c.keyframe for c in candidates),
                          "near_duplicate_frames": duplicates,
                          "skipped_objects": dict(skipped.counts),
                          "boxes_outside_frame": writer.boxes_outside},
            "split": {"rule": "blocks of `block` frames; val frames within `guard` frames "
                              "of a train frame dropped",
                      "val_blocks": [[k, b] for k, b in plan.val_blocks],
                      "guard_dropped": [[k, f] for k, f in plan.guard_dropped],
                      "frames": dict(frames)},
            "frames": rows,
        }
        writer.finish(manifest, val_empty=not frames["val"])
    return DatasetResult(writer.output, frames, boxes, len(candidates),
                         sum(c.keyframe for c in candidates), len(duplicates),
                         len(plan.guard_dropped), writer.boxes_outside, skipped)
