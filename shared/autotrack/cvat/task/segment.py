"""Follow objects a person drew on one frame of a CVAT task as pixel masks (SAM2, XMem, SAM3).

``autotrack task annotate TASK --segmenter ...`` cannot hand a video task to CVAT's
auto-annotation, so it runs the segmenters itself. These are its pure steps, in order:

1. :func:`prompts_from_task`: the rectangles, polygons and masks (and ellipses) on task
   frame F become one prompt each, labelled with their task label (SAM2, XMem).
2. :func:`task_label_ids`: the task label id of every label name the output will carry,
   checked before any model runs (SAM3: its ``--text`` names must be task labels).
3. :func:`segment_task_frames`: the task's frames through the segmenter
   (:func:`autotrack.vos.offline.segment_frames`), task frame numbers kept.
4. :func:`segmentation_to_cvat`: the result as CVAT request JSON, per-frame masks grouped by
   object or polygon tracks (:mod:`autotrack.export.cvat_masks_json`), with
   :func:`next_group` as ``first_group``.

What counts as a prompt on frame F (``annotations`` as the REST API gives them):

* a standalone shape on F whose ``outside`` is not set;
* a track visible on F: a keyframe on F that is not ``outside``, or, between keyframes, the
  state CVAT shows there: a rectangle or ellipse interpolated linearly from the keyframes
  around F (as CVAT interpolates them), a polygon or mask held from the previous keyframe
  when nothing changes after it (no later keyframe, or one with the same points). A polygon
  or mask that CVAT morphs between two different keyframes is an error asking for a keyframe
  on F (CVAT's polygon interpolation is not reproduced here);
* only what a person made: objects whose ``source`` is ``auto`` (this tool's own output, or a
  model's) are skipped unless ``include_auto``, so rerunning on a frame never turns an earlier
  run's masks into prompts.

Shapes become prompts as follows: a rectangle is a box prompt (a rotated one: the box around
it); an ellipse is the box around it, like a rectangle (it marks an object, its outline is no
mask of it); a polygon is a mask prompt, filled; a mask is a mask prompt, CVAT's run lengths
over its box decoded (:func:`autotrack.masks.decode_cvat_mask`; a box reaching past the frame
is cropped). Points, polylines, cuboids and skeletons are not prompts and are skipped. XMem
starts objects from masks: for it (``masks_only``) an object given only by a box is an error
naming it, not the filled rectangle the offline ``annotate --segmenter xmem`` accepts,
because in a task a polygon or mask is as quick to draw and a rectangle is a poor mask.

Segmenters only run forward: objects start on F and are followed on the frames after it, so
the command should start at F (``--start F``); frames before F cost SAM2 nothing but give no
masks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from itertools import pairwise
from typing import Any

import numpy as np

from autotrack.errors import InputError
from autotrack.masks import decode_cvat_mask, encode_cvat_mask, polygons_to_masks
from autotrack.vos.base import VideoSegmenter
from autotrack.vos.mask_tracks import DEFAULT_MASK_KEYFRAME_IOU
from autotrack.vos.offline import SegmentationResult, segment_frames
from autotrack.vos.prompts import MaskSpec, PromptEntry, PromptFile

PROMPT_TYPES = ("rectangle", "polygon", "mask", "ellipse")
_AUTO = "made by a model (source 'auto')"
OUTPUT_TYPES = ("mask", "polygon")


# ------------------------------------------------------------------------- shapes -> prompts
def _describe(obj: Mapping[str, Any], kind: str, shape_type: str) -> str:
    ident = obj.get("id")
    return f"{shape_type} {kind}" + (f" {ident}" if ident is not None else "")


def _points(shape: Mapping[str, Any], what: str) -> np.ndarray:
    try:
        points = np.asarray([float(v) for v in shape.get("points") or []], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what}: its points are not numbers") from None
    if not np.isfinite(points).all():
        raise InputError(f"{what}: its points are not finite")
    return points


def _rotated_box(cx: float, cy: float, half_w: float, half_h: float,
                 degrees: float) -> tuple[float, float, float, float]:
    """The axis-aligned box around a ``half_w`` x ``half_h`` box (or ellipse: the same
    extents) centred on (cx, cy) and rotated by ``degrees``."""
    a = math.radians(degrees)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    ext_w, ext_h = half_w * c + half_h * s, half_w * s + half_h * c
    return cx - ext_w, cy - ext_h, cx + ext_w, cy + ext_h


def _box_of(shape_type: str, points: np.ndarray, rotation: float,
            what: str) -> tuple[float, float, float, float]:
    if shape_type == "rectangle":
        if len(points) != 4:
            raise InputError(f"{what}: a rectangle needs 4 numbers, got {len(points)}")
        x1, y1, x2, y2 = points
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
        if rotation % 360:
            return _rotated_box((x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2,
                                rotation)
        return x1, y1, x2, y2
    # CVAT's ellipse: centre, then the right end of its x radius and the top of its y radius
    if len(points) != 4:
        raise InputError(f"{what}: an ellipse needs 4 numbers, got {len(points)}")
    cx, cy, right, top = points
    return _rotated_box(cx, cy, abs(right - cx), abs(cy - top), rotation)


def _clip_box(box, width: int, height: int, what: str) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (round(float(v), 3) + 0.0 for v in box)  # a rotation's 1e-15s
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if not (x2 > x1 and y2 > y1):
        raise InputError(f"{what}: its box {[round(float(v), 2) for v in box]} covers no part "
                         f"of the {width}x{height} frame")
    return float(x1), float(y1), float(x2), float(y2)


def _decode_mask(points: np.ndarray, width: int, height: int, what: str) -> np.ndarray:
    """CVAT's mask points (runs, then inclusive left, top, right, bottom) as an (H, W) mask;
    a box reaching past the frame is cropped to it."""
    if len(points) < 5:
        raise InputError(f"{what}: a mask needs run lengths and a box, got {len(points)} "
                         "numbers")
    left, top, right, bottom = (math.trunc(v) for v in points[-4:])
    box_w, box_h = right - left + 1, bottom - top + 1
    if box_w <= 0 or box_h <= 0:
        raise InputError(f"{what}: its box {left}, {top}, {right}, {bottom} is empty")
    try:
        local = decode_cvat_mask([*points[:-4], 0, 0, box_w - 1, box_h - 1], box_h, box_w)
    except ValueError as exc:
        raise InputError(f"{what}: {exc} ({box_w}x{box_h} box)") from None
    mask = np.zeros((height, width), dtype=bool)
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(right + 1, width), min(bottom + 1, height)
    if x2 > x1 and y2 > y1:
        mask[y1:y2, x1:x2] = local[y1 - top:y2 - top, x1 - left:x2 - left]
    return mask


def _mask_spec(mask: np.ndarray, what: str, frame_size: str) -> MaskSpec:
    encoded = encode_cvat_mask(mask)
    if encoded is None:
        raise InputError(f"{what}: covers no pixel of the {frame_size} frame")
    *runs, x1, y1, x2, y2 = encoded
    return MaskSpec(tuple(runs), x1, y1, x2 - x1 + 1, y2 - y1 + 1)


@dataclass(frozen=True)
class _State:
    """One object's shape on the frame: type, points, rotation."""

    type: str
    points: np.ndarray
    rotation: float


def _interpolated(left: Mapping[str, Any], right: Mapping[str, Any], frame: int,
                  what: str) -> np.ndarray | None:
    """Points linearly between two keyframes (CVAT's rectangle and ellipse interpolation);
    None when their point counts differ."""
    a, b = _points(left, what), _points(right, what)
    if len(a) != len(b):
        return None
    t = (frame - int(left["frame"])) / (int(right["frame"]) - int(left["frame"]))
    return a + (b - a) * t


def _track_state(track: Mapping[str, Any], frame: int, what: str) -> _State | None:
    """What CVAT shows of ``track`` on ``frame`` (module docstring), None when hidden."""
    shapes = sorted(track.get("shapes") or [], key=lambda s: int(s["frame"]))
    before = [s for s in shapes if int(s["frame"]) <= frame]
    if not before or before[-1].get("outside"):
        return None
    left = before[-1]
    shape_type = str(left.get("type"))
    rotation = float(left.get("rotation") or 0.0)
    if int(left["frame"]) == frame:
        return _State(shape_type, _points(left, what), rotation)
    after = shapes[len(before):]
    right = after[0] if after else None
    if right is None:
        return _State(shape_type, _points(left, what), rotation)  # held to the end
    if shape_type in ("rectangle", "ellipse"):
        points = _interpolated(left, right, frame, what)
        if points is not None:
            r0, r1 = rotation, float(right.get("rotation") or 0.0)
            turn = (r1 - r0 + 180.0) % 360.0 - 180.0
            t = (frame - int(left["frame"])) / (int(right["frame"]) - int(left["frame"]))
            return _State(shape_type, points, r0 + turn * t)
    elif shape_type not in PROMPT_TYPES:
        return _State(shape_type, np.zeros(0), 0.0)  # not a prompt type: skipped anyway
    if np.array_equal(_points(left, what), _points(right, what)):
        return _State(shape_type, _points(left, what), rotation)  # held
    raise InputError(f"{what} is interpolated on frame {frame} (between its keyframes on "
                     f"frames {left['frame']} and {right['frame']}): make frame {frame} one "
                     "of its keyframes, so that its outline there is the one you see")


def _label_names(labels: Iterable[Any]) -> dict[int, str]:
    return {int(label.id): str(label.name) for label in labels}


def prompts_from_task(
    annotations: Mapping[str, Any], frame: int, labels: Sequence[Any], *, width: int,
    height: int, where: str = "the task", masks_only: bool = False,
    include_auto: bool = False,
) -> PromptFile:
    """One prompt per object a person drew on task frame ``frame`` (module docstring), as a
    :class:`PromptFile` whose entries are on ``frame`` (task numbering), objects numbered 1,
    2, ... in the order found (shapes, then tracks), labelled with their task label's name.

    ``labels``: the task's :class:`~autotrack.cvat.task.labels.TaskLabel` s (``id``,
    ``name``); ``where`` names the task or job in errors; ``masks_only`` (XMem) refuses an
    object given by a box alone. Raises :class:`InputError` when nothing is on the frame, for
    a label id the task lacks, and for shapes that cover no pixel of the frame."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    names = _label_names(labels)
    frame_size = f"{width}x{height}"
    found: list[tuple[str, Mapping[str, Any], _State]] = []
    skipped: Counter[str] = Counter()
    for shape in annotations.get("shapes") or []:
        if int(shape.get("frame", -1)) != frame or shape.get("outside"):
            continue
        if shape.get("source") == "auto" and not include_auto:
            skipped[_AUTO] += 1
            continue
        shape_type = str(shape.get("type"))
        what = _describe(shape, "shape", shape_type)
        found.append((what, shape, _State(shape_type, _points(shape, what),
                                          float(shape.get("rotation") or 0.0))))
    for track in annotations.get("tracks") or []:
        shapes = track.get("shapes") or []
        if not shapes:
            continue
        if track.get("source") == "auto" and not include_auto:
            if any(int(s["frame"]) <= frame for s in shapes):
                skipped[_AUTO] += 1
            continue
        what = _describe(track, "track", str(shapes[0].get("type")))
        label = names.get(int(track.get("label_id", -1)))
        state = _track_state(track, frame, what + (f" (label {label!r})" if label else ""))
        if state is not None:
            found.append((what, track, state))

    entries: list[PromptEntry] = []
    for what, obj, state in found:
        if state.type not in PROMPT_TYPES:
            skipped[f"of type {state.type!r}"] += 1
            continue
        label_id = int(obj.get("label_id", -1))
        if label_id not in names:
            raise InputError(f"{what} on frame {frame} has label id {label_id}, which is not "
                             f"a label of {where}")
        label = names[label_id]
        what = f"{what} (label {label!r}) on frame {frame}"
        box = mask = None
        if state.type in ("rectangle", "ellipse"):
            if not masks_only:
                box = _clip_box(_box_of(state.type, state.points, state.rotation, what),
                                width, height, what)
            else:
                raise InputError(
                    f"{what}: xmem starts objects from masks, and a {state.type} gives only "
                    "a box; draw a polygon or a mask for this object (or use --segmenter "
                    "sam2, which starts from boxes)")
        elif state.type == "polygon":
            if len(state.points) < 6 or len(state.points) % 2:
                raise InputError(f"{what}: a polygon needs at least 3 x, y points")
            filled = polygons_to_masks([state.points.reshape(-1, 2)], (height, width))[0]
            mask = _mask_spec(filled, what, frame_size)
        else:
            mask = _mask_spec(_decode_mask(state.points, width, height, what), what,
                              frame_size)
        entries.append(PromptEntry(0, len(entries) + 1, label, frame, box=box, mask=mask))
    if not entries:
        also = "; ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        raise InputError(f"no rectangles, polygons or masks on frame {frame} of {where}: draw "
                         f"one per object to follow" + (f" (skipped: {also})" if also else ""))
    return PromptFile(f"{where}, frame {frame}", tuple(entries))


# --------------------------------------------------------------------------------- labels
def task_label_ids(names: Iterable[str], labels: Sequence[Any], *, shape_type: str = "mask",
                   where: str = "the task") -> dict[str, int]:
    """``{name: task label id}`` for every output label name: the label of that exact name,
    else the one whose name matches ignoring case. The label must hold ``shape_type``
    (``mask`` or ``polygon``: its type ``any`` or that). Raises :class:`InputError` naming
    the first name without a usable label."""
    if shape_type not in OUTPUT_TYPES:
        raise ValueError(f"shape_type must be one of {OUTPUT_TYPES}, got {shape_type!r}")
    labels = list(labels)
    listed = ", ".join(repr(str(label.name)) for label in labels) or "none"
    out: dict[str, int] = {}
    for name in dict.fromkeys(names):
        label = next((lb for lb in labels if str(lb.name) == name), None)
        if label is None:
            folded = [lb for lb in labels
                      if str(lb.name).strip().casefold() == name.strip().casefold()]
            if len(folded) > 1:
                raise InputError(f"{where} has several labels named like {name!r} "
                                 f"({', '.join(repr(str(lb.name)) for lb in folded)}); use "
                                 "the exact name")
            label = folded[0] if folded else None
        if label is None:
            raise InputError(f"{where} has no label {name!r} (labels: {listed}); objects "
                             "must be labelled with a task label")
        kind = str(getattr(label, "type", "any") or "any")
        if kind not in ("any", shape_type):
            raise InputError(f"label {str(label.name)!r} of {where} is of type {kind!r}, "
                             f"which cannot hold {shape_type}s; use a label of type 'any' or "
                             f"{shape_type!r}")
        out[name] = int(label.id)
    return out


def next_group(annotations: Mapping[str, Any]) -> int:
    """The first ``group`` id no shape or track of ``annotations`` uses (CVAT groups are
    task-wide, so new groups start above the existing ones)."""
    groups = [int(obj.get("group") or 0)
              for key in ("shapes", "tracks", "tags") for obj in annotations.get(key) or []]
    return max(groups, default=0) + 1


# ------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class TaskSegmentation(SegmentationResult):
    """A :class:`SegmentationResult` over task frames: the tracks' frame indices 0, 1, ...
    are the task frames ``frame_numbers[0], frame_numbers[1], ...``."""

    frame_numbers: tuple[int, ...] = field(default=())


def _frame_numbers(frames: Iterable[tuple[int, np.ndarray]],
                   given: Sequence[int] | None) -> list[int]:
    if given is None:
        given = getattr(frames, "frames", None)  # TaskFrames
    if given is None and isinstance(frames, Sequence):
        given = [int(f) for f, _ in frames]
    if given is None:
        raise TypeError("pass frame_numbers: the task frames the iterable will give, in order")
    numbers = [int(f) for f in given]
    if not numbers:
        raise InputError("no frames to process")
    if any(b <= a for a, b in pairwise(numbers)):
        raise ValueError("task frames must come in increasing order")
    return numbers


def segment_task_frames(
    frames: Iterable[tuple[int, np.ndarray]], segmenter: VideoSegmenter,
    prompts: PromptFile | None, *, width: int, height: int,
    min_iou: float = DEFAULT_MASK_KEYFRAME_IOU, on_frame: Callable[[int], None] | None = None,
    frame_numbers: Sequence[int] | None = None,
) -> TaskSegmentation:
    """Run ``segmenter`` over ``(task frame, BGR frame)`` pairs (a
    :class:`~autotrack.cvat.task.frames.TaskFrames`) with ``prompts`` on their task frames,
    through :func:`~autotrack.vos.offline.segment_frames`.

    Task frames need not start at 0 nor be consecutive (a job, ``--start``, deleted frames):
    they are fed as indices 0, 1, ... and kept in the result's ``frame_numbers``, which
    :func:`segmentation_to_cvat` maps back. ``frame_numbers`` defaults to the iterable's
    ``frames`` attribute (TaskFrames has it) or, for a sequence, its frame numbers. Prompts
    are checked against ``width`` x ``height`` and the frames before the model runs; a
    prompt on a frame that is not processed is an :class:`InputError`. ``on_frame`` gets
    each task frame number once it is done; SAM3 runs without prompts."""
    numbers = _frame_numbers(frames, frame_numbers)
    index_of = {f: i for i, f in enumerate(numbers)}
    local = None
    if prompts is not None:
        prompts.check(width=width, height=height)
        for entry in prompts.entries:
            if entry.frame not in index_of:
                raise InputError(f"{prompts.source}: object {entry.object_id} is prompted on "
                                 f"frame {entry.frame}, which is not among the {len(numbers)} "
                                 f"frames to process ({numbers[0]}-{numbers[-1]})")
        local = PromptFile(prompts.source, tuple(sorted(
            (replace(e, frame=index_of[e.frame]) for e in prompts.entries),
            key=lambda e: (e.frame, e.object_id))))

    def renumbered() -> Iterator[tuple[int, np.ndarray]]:
        for index, (task_frame, image) in enumerate(frames):
            if index >= len(numbers) or int(task_frame) != numbers[index]:
                expected = numbers[index] if index < len(numbers) else "no more frames"
                raise ValueError(f"the frames gave task frame {task_frame} where "
                                 f"{expected} was expected")
            yield index, image

    report = None if on_frame is None else (lambda index: on_frame(numbers[index]))
    result = segment_frames(renumbered(), segmenter, local, min_iou=min_iou, on_frame=report,
                            checked_size=(width, height))
    if result.frames_read != len(numbers):
        raise InputError(f"only {result.frames_read} of the {len(numbers)} frames to process "
                         f"could be read (the last was frame {numbers[result.frames_read - 1]})")
    values = {f.name: getattr(result, f.name) for f in fields(SegmentationResult)}
    return TaskSegmentation(**values, frame_numbers=tuple(numbers))


def segmentation_to_cvat(
    result: SegmentationResult, label_ids: Mapping[str, int], *, polygons: bool,
    first_frame: int = 0, end_frame: int | None = None, first_group: int = 1,
    source: str = "auto", polygon_tolerance: float = 1.0,
) -> dict[str, list[dict[str, Any]]]:
    """CVAT request JSON ``{"shapes": [...], "tracks": [...]}`` for ``result``'s tracks
    (see :mod:`autotrack.export.cvat_masks_json`): without ``polygons`` one ``mask`` shape per
    object on every frame it shows, an object's shapes sharing the group ``first_group + k``
    (k-th object; pass :func:`next_group`); with ``polygons`` one polygon track per object,
    keyframes where its outline changes and ``outside`` keyframes where it leaves.

    Frames: a :class:`TaskSegmentation` carries its task frame numbers; a plain result's
    frame index i is task frame ``first_frame + i``. ``end_frame`` (the task frame after the
    last one processed, when the task or job goes on) closes polygon tracks still shown at
    the end. ``label_ids`` maps label names to task label ids (:func:`task_label_ids`); a
    label without one is an :class:`InputError` naming it."""
    from autotrack.export.cvat_masks_json import mask_tracks_json

    numbers = getattr(result, "frame_numbers", None) or None
    return mask_tracks_json(result.tracks, label_ids, polygons=polygons, frame_numbers=numbers,
                            first_frame=first_frame, frame_count=result.frames_read,
                            end_frame=end_frame, first_group=first_group, source=source,
                            polygon_tolerance=polygon_tolerance)
