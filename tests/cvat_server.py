"""A CVAT-compatible REST server for tests: the endpoints ``autotrack task annotate`` uses.

Runs ``http.server.ThreadingHTTPServer`` in a thread on 127.0.0.1 and serves real frames
(JPEG-encoded once, cached). It models the CVAT server cvat-sdk 2.80 talks to, as read in
CVAT's own source (file and function named at each place below; which versions were read is
said at the end; CVAT is not run):

Storage, per job (``cvat/apps/dataset_manager/task.py``, ``JobAnnotation``): every tag, shape
and track is a row of one job, with ids from one sequence per table, as in the database
(``engine_labeledimage``, ``engine_labeledshape``, ``engine_labeledtrack``,
``engine_trackedshape``). A task's jobs come from ``segment_size``/``overlap`` as
``cvat/apps/engine/task.py`` ``_get_task_segment_data`` computes them.

* job-level GET/PUT/PATCH/DELETE (``JobViewSet.annotations``, ``JobAnnotation.init_from_db /
  put / create / update / delete``) act on that job's rows only. CVAT neither clips nor refuses
  objects outside the job's frames there: it stores them in that job (see ``strict``);
* task-level writes (``TaskAnnotation._patch_data``) cut the body into one piece per job with
  ``AnnotationIR.slice`` / ``_is_track_inside`` / ``_slice_track`` (``annotation.py``) and run the
  job-level action on each piece: a tag or shape on a frame two jobs share goes to both jobs
  (two rows), a track is cut at job boundaries with interpolated keyframes added, and a PUT
  replaces every job's rows (an empty piece empties the job);
* task-level reads (``TaskAnnotation.init_from_db``) read each job (in job order) and merge
  them with ``AnnotationManager.merge`` / ``ObjectManager.merge``: on the first ``overlap``
  frames of a job, objects are matched to the earlier jobs' objects with the Hungarian
  algorithm (``scipy.optimize.linear_sum_assignment``) on ``1 - similarity``, accepted when the
  cost is at most 0.25 (tags: same label; shapes: IoU of rectangles/polygons) or 0.5 (tracks:
  ``TrackManager._calc_objects_similarity``, mean IoU of the interpolated boxes over the
  overlap frames). A matched track piece is joined into the earlier piece, which keeps its id
  and its shapes where both have one (``TrackManager._unite_objects``); a matched tag/shape of
  the later job is dropped. An unmatched earlier track that is still visible gets an outside
  keyframe at ``start + overlap`` (``_modify_unmatched_object``). With overlap 0 nothing is
  matched: one track per job piece, each closed by that outside keyframe at the next job's
  start. The answer to a task-level write is the job answers merged the same way.

Consequences this model reproduces (they are CVAT's, not this server's): a task-level PATCH
``delete`` removes an id only from the job(s) whose piece of the body holds it, so the later
piece of a track joined at read time (a row with another id) survives, as does the later
job's copy of a shape on a shared frame; with overlap > 0 a task-level ``update`` of a track
read as one across jobs fails with a duplicate-key 400 (its id, and the ids its interpolated
boundary shapes copy, are created twice); a track with no outside keyframe at its end is
visible to the end of the task, so every later job gets a piece of it; a task-level read
lists the objects that start on a job's first ``overlap`` frames after the others (even for
the first job), so its order is not the order of the ids.

Requests (``cvat/apps/engine/views.py``, ``TaskViewSet.annotations`` / ``JobViewSet.annotations``):
PUT bodies are validated with ``annotation_action`` = create and PATCH bodies with their
``action``; since cvat-ai/cvat PR #9583 ("Prohibit creating annotations with preset ID") that
refuses ids on create and PUT and requires them on delete; update without an id creates the
object (the PR's own words). This server also refuses ids on the shapes of a track created
(assumed: the PR does not say). The 400 body is DRF-shaped (``{"tracks": [{"id": [...]}]}``); its
wording is this server's (the serializer's exact text was not found). Label and attribute
checks are ``JobAnnotation._validate_label_for_existence`` / ``_validate_attribute_for_existence``
(track attributes must be immutable ones, tracked-shape attributes mutable ones). An id given
to update that another job holds is a database duplicate key: 400 with PostgreSQL's message on
PATCH (the view catches ``IntegrityError``), 500 on a task PUT (it does not). A new object takes
the next id of its table's sequence; ids created explicitly (update) do not move the sequence.
A track whose ``frame`` precedes its first shape gets an outside shape there and one that
follows it is moved back (``JobAnnotation._correct_frame_of_tracked_shapes``). GET fills in every
attribute a label defines (``_extend_attributes``); shapes come back ordered by frame, tracks
by id with their shapes by frame. Jobs (``GET /api/jobs``, ordered by ``-id``) have ``state``
and ``stage``; ``status`` follows ``JobWriteSerializer.update``.

Projects (``cvat/apps/engine/views.py``, 2023): ``GET /api/projects/ID`` is
``ProjectViewSet.retrieve`` (DRF's ``RetrieveModelMixin``: an unknown id is 404 ``Not
found.``, another user's project 403). ``GET /api/tasks`` is ``TaskViewSet.list``: ordered
by ``-id``, paged like every list, with the simple filter ``project_id`` (an unknown project
is an empty page, not a 404) and the sandbox list filter of ``cvat/apps/engine/rules/
tasks.rego`` (tasks whose owner or assignee, or whose project's owner or assignee, is the
user; ``users`` stands for assignees). A task in a project has no labels of its own:
``GET /api/labels?task_id=`` answers the project's (``LabelViewSet.get_queryset``,
``task.get_labels()``), as does ``?project_id=`` (``project.get_labels()``); two of
``job_id``, ``task_id``, ``project_id`` together are a 400. Viewing a task is allowed to the
staff of its project too (``is_task_staff`` in tasks.rego).

On top of that, as before: every JSON request body is deserialized into the cvat-sdk model of
its endpoint with full type checking and keys the schema does not define are refused; every
JSON answer is checked against the cvat-sdk read model; authentication as CVAT does it (login
cookies + ``X-CSRFToken``, or ``Authorization: Bearer``; 401 without, 403 on another user's
task). Every request is recorded; an endpoint not implemented here answers 404 with
``route=None``.

``strict=True`` (the default) also refuses, with 400, what CVAT silently alters, drops or
later fails on, each message saying what CVAT would do: frames outside the task (a task-level
write drops them) or outside the job (a job-level write stores them in that job), a track
whose frame is not its first shape's, two shapes of one track on one frame or of different
types, a track without shapes (CVAT answers 500 on these), a rectangle without 4 points.
``strict=False`` behaves as CVAT does on all of these (500 where CVAT fails).

Simplified: polygon/polyline tracks interpolate point by point (CVAT matches the two curves);
intervals (audio) are stored on the first job holding their start and never merged; 3D,
skeletons (``elements``), ground-truth/consensus jobs, exports (410, as CVAT's GET with export
parameters) and organizations are not modelled. Unlike CVAT's ``get_interpolated_shapes``, the
merge does not write ``keyframe`` flags or propagated attributes into the shapes it answers.
The CVAT source read: ``dataset_manager/task.py`` and ``engine/views.py`` (2025, with
``_validate_input_annotations``), ``dataset_manager/annotation.py`` (2023, commit 4c4f6b5),
``engine/task.py`` ``_get_task_segment_data``.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import os
import re
import secrets
import tempfile
import threading
import traceback
import zipfile
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import cv2
import numpy as np

SERVER_VERSION = "2.80.0"  # cvat-sdk 2.80 supports servers 2.80 and 2.81
SOURCES = ("manual", "semi-auto", "auto", "file", "consensus")  # CVAT's SourceType
MAX_BODY = 64 * 1024 * 1024
DATE = "2026-11-01T12:00:00.000000Z"
KEYS = ("tags", "shapes", "tracks", "intervals")
JOB_STATES = ("new", "in progress", "rejected", "completed")  # engine/models.py StateChoice
JOB_STAGES = ("annotation", "validation", "acceptance")  # engine/models.py StageChoice
# ObjectManager.merge: a match is kept when 1 - similarity is at most this
# (TagManager/ShapeManager._get_cost_threshold 0.25, TrackManager._get_cost_threshold 0.5).
MERGE_COST_THRESHOLD = {"tags": 0.25, "shapes": 0.25, "tracks": 0.5}
# PostgreSQL primary-key constraints named in a duplicate-key IntegrityError.
DB_TABLES = {"tags": "engine_labeledimage", "shapes": "engine_labeledshape",
             "tracks": "engine_labeledtrack", "tracked_shapes": "engine_trackedshape",
             "intervals": "engine_labeledinterval"}
ID_ABSENT = "This field must be absent when annotations are created (PUT or action=create)."
ID_REQUIRED = "This field is required to delete an annotation."


# --- frames -------------------------------------------------------------------------------

class FrameStore:
    """Frames of one video as JPEG bytes, encoded once; decoded copies on demand."""

    def __init__(self, jpegs: list[bytes], width: int, height: int) -> None:
        self.jpegs = jpegs
        self.width = width
        self.height = height

    @classmethod
    def from_video(cls, path: str | os.PathLike[str], quality: int = 92) -> FrameStore:
        capture = cv2.VideoCapture(str(path))
        jpegs: list[bytes] = []
        size = (0, 0)
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                size = (frame.shape[1], frame.shape[0])
                ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise RuntimeError(f"cannot encode frame {len(jpegs)} of {path}")
                jpegs.append(buffer.tobytes())
        finally:
            capture.release()
        if not jpegs:
            raise RuntimeError(f"{path}: no frames")
        return cls(jpegs, *size)

    def __len__(self) -> int:
        return len(self.jpegs)

    def image(self, index: int) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(self.jpegs[index], np.uint8), cv2.IMREAD_COLOR)


# --- the server's data --------------------------------------------------------------------

def _empty_rows() -> dict[str, list[dict[str, Any]]]:
    return {key: [] for key in KEYS}


@dataclass
class FakeJob:
    """A job: its segment's frames, its review state and its own annotation rows.

    ``annotations`` holds the rows as stored (what a job GET returns before the label's
    attributes are filled in); tests may edit them in place, as a person would in the UI.
    """

    id: int
    task_id: int
    start: int
    stop: int
    type: str = "annotation"
    state: str = "new"  # one of JOB_STATES
    stage: str = "annotation"  # one of JOB_STAGES
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=_empty_rows)


@dataclass
class FakeProject:
    """A project: its labels (which its tasks share) and who may see it."""

    id: int
    name: str
    labels: list[dict[str, Any]]
    owner: str
    users: set[str] = field(default_factory=set)  # others who may see it (assignees)


@dataclass
class FakeTask:
    id: int
    name: str
    size: int
    labels: list[dict[str, Any]]
    owner: str
    project: FakeProject | None = None
    mode: str = "interpolation"
    dimension: str = "2d"
    chunk_size: int = 36
    chunk_type: str = "imageset"  # original chunks: "imageset" (zip) or "video" (mp4)
    frame_offset: int = 0  # task frame i is video frame frame_offset + i
    users: set[str] = field(default_factory=set)  # others who may see and edit it
    deleted_frames: list[int] = field(default_factory=list)
    broken_chunks: set[int] = field(default_factory=set)  # chunks served as garbage
    segment_size: int = 0
    overlap: int = 0
    jobs: list[FakeJob] = field(default_factory=list)

    @property
    def annotations(self) -> dict[str, list[dict[str, Any]]]:
        """The rows of a one-job task (its job's ``annotations``), for tests that edit them."""
        if len(self.jobs) != 1:
            raise AttributeError(f"task {self.id} has {len(self.jobs)} jobs: use "
                                 "task.jobs[i].annotations")
        return self.jobs[0].annotations


def segments(size: int, segment_size: int = 0, overlap: int | None = None,
             mode: str = "interpolation") -> tuple[list[tuple[int, int]], int, int]:
    """Job frame ranges as ``cvat/apps/engine/task.py`` ``_get_task_segment_data`` makes them.

    ``segment_size`` 0 (or more than the frames) means one job; the overlap defaults to 5 for
    video ("interpolation") tasks and 0 for image tasks, and is at most ``segment_size // 2``.
    Segments start every ``segment_size - overlap`` frames below ``size - overlap``.
    Returns (ranges, segment_size, overlap) as stored on the task.
    """
    if segment_size == 0 or segment_size > size:
        segment_size = size
    overlap = min(overlap if overlap is not None else 5 if mode == "interpolation" else 0,
                  segment_size // 2)
    ranges = [(start, min(start + segment_size - 1, size - 1))
              for start in range(0, size - overlap, segment_size - overlap)]
    return ranges, segment_size, overlap


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    route: str | None  # the endpoint's name; None for an unknown endpoint
    user: str | None = None


class ServerError(Exception):
    """An HTTP error answer: status and a JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def _bad(message: str) -> ServerError:
    return ServerError(400, [message])


# --- schema checks ------------------------------------------------------------------------

def _model(name: str) -> Any:
    from cvat_sdk import models

    return getattr(models, name)


def _check_known_keys(value: Any, model: Any, path: str) -> None:
    """Refuse keys the schema does not define, at every level (cvat-sdk lets them through)."""
    from cvat_sdk.api_client.model_utils import ModelNormal

    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key not in model.attribute_map.values():
            raise _bad(f"{path}: unknown field {key!r} for {model.__name__}")
        attr = next(a for a, j in model.attribute_map.items() if j == key)
        kinds = model.openapi_types[attr]
        for kind in kinds:
            if isinstance(kind, list) and kind and isinstance(kind[0], type) and issubclass(
                    kind[0], ModelNormal) and isinstance(item, list):
                for i, element in enumerate(item):
                    _check_known_keys(element, kind[0], f"{path}.{key}[{i}]")
            elif isinstance(kind, type) and issubclass(kind, ModelNormal):
                _check_known_keys(item, kind, f"{path}.{key}")


def validate_request(data: Any, model_name: str) -> Any:
    """Deserialize a request body into the cvat-sdk model with full type checking."""
    from cvat_sdk.api_client.model_utils import validate_and_convert_types

    model = _model(model_name)
    if not isinstance(data, dict):
        raise _bad(f"body: expected a JSON object for {model_name}, got {type(data).__name__}")
    try:
        instance = validate_and_convert_types(data, (model,), ["body"], True, True)
    except Exception as exc:  # noqa: BLE001 (the validation message is the answer)
        raise _bad(f"body does not match {model_name}: {' '.join(str(exc).split())}") from None
    _check_known_keys(data, model, "body")
    return instance


def validate_response(data: Any, model_name: str) -> None:
    """Check an answer against the cvat-sdk read model, converting as the client would."""
    from cvat_sdk.api_client import Configuration
    from cvat_sdk.api_client.model_utils import validate_and_convert_types

    validate_and_convert_types(copy.deepcopy(data), (_model(model_name),), ["response"], True,
                               True, configuration=Configuration())
    _check_known_keys(data, _model(model_name), "response")


# --- CVAT's slicing and merging (cvat/apps/dataset_manager/annotation.py) ---------------

def _cvat_failure(kind: str, what: str) -> ServerError:
    """An exception CVAT does not catch: it answers 500."""
    return ServerError(500, {"detail": f"{kind}: {what} (CVAT fails here with a server error)"})


def _angle_step(right: float, left: float) -> float:
    """``get_interpolated_shapes.find_angle_diff``: the signed short way from left to right."""
    diff = ((right - left + 180) % 360) - 180
    if abs(diff) >= 180:  # only -180 gets here; CVAT's expression then yields 1
        diff = 360 - abs(diff) * -1 if diff > 0 else 1
    return diff


def _copy_shape(source: dict[str, Any], frame: int, points: Any = None,
                rotation: float | None = None) -> dict[str, Any]:
    """``get_interpolated_shapes.copy_shape``: a non-key copy, ``id`` included."""
    copied = dict(source)
    copied["attributes"] = copy.deepcopy(source.get("attributes", []))
    copied["keyframe"] = False
    copied["frame"] = frame
    if rotation is not None:
        copied["rotation"] = rotation
    values = source.get("points", []) if points is None else points
    copied["points"] = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return copied


def _between(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The frames strictly between two keyframes (``get_interpolated_shapes.interpolate``).

    Boxes (rectangle, ellipse, cuboid, skeleton) and two-number points move linearly, the
    rotation along the short arc; other points are held. Polygons and polylines move point by
    point when the counts match, else are held (CVAT matches the two curves: simplified).
    """
    if before["type"] != after["type"]:
        raise _cvat_failure("NotImplementedError", "a track's shapes change type "
                            f"({before['type']} -> {after['type']})")
    kind = before["type"]
    p0 = list(before.get("points", []))
    p1 = list(after.get("points", []))
    linear = (kind in ("rectangle", "ellipse", "cuboid", "skeleton")
              or (kind == "points" and len(p0) == 2 and len(p1) == 2)
              or (kind in ("polygon", "polyline") and len(p0) == len(p1)))
    out = []
    distance = after["frame"] - before["frame"]
    diff = np.subtract(p1, p0) if linear else None
    for frame in range(before["frame"] + 1, after["frame"]):
        if not linear:
            out.append(_copy_shape(before, frame))
            continue
        offset = (frame - before["frame"]) / distance
        rotation = (before.get("rotation", 0.0) + _angle_step(
            after.get("rotation", 0.0), before.get("rotation", 0.0)) * offset + 360) % 360
        out.append(_copy_shape(before, frame, p0 + diff * offset, rotation))
    return out


def interpolated_shapes(track: dict[str, Any], end_frame: int) -> list[dict[str, Any]]:
    """``TrackManager.get_interpolated_shapes(track, _, end_frame)``, on copies.

    Every frame from the track's ``frame`` up to ``end_frame`` (exclusive) where the track is
    visible, plus its keyframes (outside ones too), each with ``keyframe`` set. Past the last
    keyframe a visible track is propagated; a keyframe at or after ``end_frame`` still shapes
    the frames before it. Attributes a keyframe lacks are taken from the previous keyframe.
    Two keyframes on one frame fail CVAT's assertion (500).
    """
    keys = sorted((copy.deepcopy(s) for s in track["shapes"]), key=lambda s: s["frame"])
    shapes: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for key in keys:
        if previous is not None and end_frame <= key["frame"]:
            for shape in [*_between(previous, key), key]:
                if shape["frame"] >= end_frame:
                    break
                shapes.append(shape)
            previous = None  # the track ends here: nothing is propagated
            break
        if previous is not None:
            if key["frame"] <= previous["frame"]:
                raise _cvat_failure("AssertionError", f"two shapes of track {track.get('id')} "
                                    f"on frame {key['frame']}")
            have = {a["spec_id"] for a in key.get("attributes", [])}
            key["attributes"] = list(key.get("attributes", [])) + [
                copy.deepcopy(a) for a in previous.get("attributes", [])
                if a["spec_id"] not in have]
            if not previous["outside"]:
                shapes.extend(_between(previous, key))
        key["keyframe"] = True
        shapes.append(key)
        previous = key
    if previous is not None and not previous["outside"]:
        shapes.extend(_copy_shape(previous, f) for f in range(previous["frame"] + 1, end_frame))
    return [s for s in shapes if track["frame"] <= s["frame"] < end_frame
            and (s["keyframe"] or not s["outside"])]


def _is_track_inside(track: dict[str, Any], start: int, stop: int) -> bool:
    """``AnnotationIR._is_track_inside``: visible on some frame of [start, stop] (shapes in the
    order given; a last shape that is not outside counts up to the end)."""
    if not track["shapes"]:
        raise _cvat_failure("TypeError", "a track without shapes cannot be cut into jobs")
    previous = None
    for shape in track["shapes"]:
        if previous is not None and not previous["outside"] and \
                min(shape["frame"], stop) - max(previous["frame"], start) >= 0:
            return True
        previous = shape
    return not previous["outside"] and previous["frame"] <= stop


def slice_track(track: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """``AnnotationIR._slice_track``: the piece of a track that a job [start, stop] stores.

    Its keyframes inside the job (leading outside ones dropped); if the track has keyframes
    elsewhere, also: the interpolated shape on the first visible frame of the job when that is
    no keyframe; then the interpolated shape on ``stop`` when the track has a keyframe at or
    after ``stop`` and that shape's points differ from the piece's last shape, or else the
    last visible-or-key shape when it is an outside keyframe (CVAT then appends that keyframe a
    second time), or else - CVAT's third branch, which indexes the list by position and never
    fires - the shape at position ``stop + 1``. The piece's frame is its first shape's.
    """
    def scoped(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        inside = [s for s in shapes if start <= int(s["frame"]) <= stop]
        first = 0
        while first < len(inside) and inside[first]["outside"]:
            first += 1
        return inside[first:]

    track = copy.deepcopy(track)
    piece = scoped(copy.deepcopy(track["shapes"]))
    if len(piece) < len(track["shapes"]):
        frames = interpolated_shapes(track, stop + 1)
        near = scoped(frames)
        if near:
            last_key = max(s["frame"] for s in track["shapes"])
            if not near[0]["keyframe"]:
                piece.insert(0, near[0])
            if not piece:
                raise _cvat_failure("IndexError", "CVAT's _slice_track found no shape to compare")
            if (last_key >= stop and near[-1]["points"] != piece[-1]["points"]) or (
                    near[-1]["keyframe"] and near[-1]["outside"]):
                piece.append(near[-1])
            elif stop + 1 < len(frames) and frames[stop + 1]["outside"]:
                piece.append(frames[stop + 1])
        for shape in piece:
            shape.pop("keyframe", None)
    track["shapes"] = piece
    if piece:
        track["frame"] = piece[0]["frame"]
    return track


def slice_annotations(data: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """``AnnotationIR.slice``: copies of the tags and shapes on [start, stop] and the pieces of
    the tracks visible there (pieces without shapes dropped). Intervals: see ``_interval_job``."""
    tracks = []
    for track in data.get("tracks", []):
        if _is_track_inside(track, start, stop):
            piece = slice_track(track, start, stop)
            if piece["shapes"]:
                tracks.append(piece)
    return {"tags": [copy.deepcopy(t) for t in data.get("tags", [])
                     if start <= int(t["frame"]) <= stop],
            "shapes": [copy.deepcopy(s) for s in data.get("shapes", [])
                       if start <= int(s["frame"]) <= stop],
            "tracks": tracks}


def _box_iou(a: list[float], b: list[float]) -> float:
    """``ShapeManager._calc_objects_similarity`` for rectangles: IoU of shapely boxes."""
    ax0, ax1 = sorted(a[0::2][:2])
    ay0, ay1 = sorted(a[1::2][:2])
    bx0, bx1 = sorted(b[0::2][:2])
    by0, by1 = sorted(b[1::2][:2])
    area_a = (ax1 - ax0) * (ay1 - ay0)
    area_b = (bx1 - bx0) * (by1 - by0)
    if area_a == 0 or area_b == 0:
        return 0.0
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (area_a + area_b - inter)


def _polygon_iou(a: list[float], b: list[float]) -> float:
    try:
        from shapely import geometry
    except ImportError:  # pragma: no cover (shapely comes with the test environment)
        return 0.0
    p0 = geometry.Polygon(list(zip(a[0::2], a[1::2], strict=False)))
    p1 = geometry.Polygon(list(zip(b[0::2], b[1::2], strict=False)))
    if not (p0.is_valid and p1.is_valid) or p0.area == 0 or p1.area == 0:
        return 0.0
    inter = p0.intersection(p1).area
    return inter / (p0.area + p1.area - inter)


def _shape_similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``ShapeManager._calc_objects_similarity``: IoU for same-type, same-label rectangles and
    polygons; 0 for anything else (CVAT: "FIXME: need some similarity for points...")."""
    if a["type"] != b["type"] or a.get("label_id") != b.get("label_id"):
        return 0.0
    if a["type"] == "rectangle":
        return _box_iou(a["points"], b["points"])
    if a["type"] == "polygon":
        return _polygon_iou(a["points"], b["points"])
    return 0.0


def _track_similarity(a: dict[str, Any], b: dict[str, Any], start: int, overlap: int) -> float:
    """``TrackManager._calc_objects_similarity``: over frames [start, start + overlap), 1 minus
    the mean error (1 where only one track is there or their outside flags differ, else
    1 - IoU of the interpolated shapes)."""
    if a["label_id"] != b["label_id"]:
        return 0.0
    end = start + overlap
    shapes_a = {s["frame"]: s for s in interpolated_shapes(a, end)}
    shapes_b = {s["frame"]: s for s in interpolated_shapes(b, end)}
    if not shapes_a or not shapes_b:
        return 0.0
    count, error = 0, 0.0
    for frame in range(start, end):
        sa, sb = shapes_a.get(frame), shapes_b.get(frame)
        if sa and sb:
            error += 1 if sa["outside"] != sb["outside"] else 1 - _shape_similarity(sa, sb)
            count += 1
        elif sa or sb:
            error += 1
            count += 1
    return 1 - error / (count or 1)


def _similarity(key: str, a: dict[str, Any], b: dict[str, Any], start: int,
                overlap: int) -> float:
    if key == "tags":  # TagManager: the same label is a match
        return 1.0 if a["label_id"] == b["label_id"] else 0.0
    if key == "shapes":
        return _shape_similarity(a, b)
    return _track_similarity(a, b, start, overlap)


def _unite(key: str, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``_unite_objects``: tags and shapes keep the earlier-framed one (on a tie, the earlier
    job's); tracks: the one that starts first gets both's shapes (the earlier job's where
    both have a frame) and the smaller frame. If that is the new piece, it is not in the
    result (CVAT only assigns it to a local list): CVAT's behaviour, kept."""
    if key != "tracks":
        return new if new["frame"] < old["frame"] else old
    track = new if new["frame"] < old["frame"] else old
    shapes = {s["frame"]: s for s in new["shapes"]}
    for shape in old["shapes"]:
        kept = shapes.get(shape["frame"])
        shapes[shape["frame"]] = kept if kept is not None and kept["frame"] < shape["frame"] \
            else shape
    track["frame"] = min(new["frame"], old["frame"])
    track["shapes"] = sorted(shapes.values(), key=lambda s: s["frame"])
    return track


def _close(key: str, obj: dict[str, Any], end_frame: int) -> None:
    """``TrackManager._modify_unmatched_object``: a visible track gets an outside copy of its
    last shape at ``end_frame`` (id included); tags and shapes are left alone."""
    if key != "tracks":
        return
    last = obj["shapes"][-1]
    if not last["outside"]:
        closing = copy.deepcopy(last)
        closing["frame"] = end_frame
        closing["outside"] = True
        obj["shapes"].append(closing)


def _by_frame(key: str, objects: list[dict[str, Any]], start: int) -> dict[int, list]:
    """``_get_objects_by_frame``: tags/shapes from ``start`` on, by frame; tracks (all under 0)
    whose last shape is at or after ``start`` or not outside."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        if key == "tracks":
            if obj["shapes"] and (obj["shapes"][-1]["frame"] >= start
                                  or not obj["shapes"][-1]["outside"]):
                groups.setdefault(0, []).append(obj)
        elif obj["frame"] >= start:
            groups.setdefault(obj["frame"], []).append(obj)
    return groups


def merge_objects(key: str, objects: list[dict[str, Any]], incoming: list[dict[str, Any]],
                  start: int, overlap: int) -> None:
    """``ObjectManager.merge``: add the next job's ``incoming`` objects to ``objects``."""
    from scipy.optimize import linear_sum_assignment

    end = start + overlap
    fresh = [o for o in incoming if o["frame"] >= end]
    shared = [o for o in incoming if o["frame"] < end]
    shared_by_frame = _by_frame(key, shared, start)
    old_by_frame = _by_frame(key, objects, start)
    objects.extend(fresh)
    if not old_by_frame or not shared_by_frame:
        for group in old_by_frame.values():
            for old in group:
                _close(key, old, end)
        objects.extend(shared)
        return
    for frame, group in shared_by_frame.items():
        olds = old_by_frame.get(frame)
        if olds is None:
            objects.extend(group)
            continue
        cost = np.array([[1 - _similarity(key, new, old, start, overlap) for old in olds]
                         for new in group], dtype=float)
        matched_new, matched_old = set(), set()
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i][j] <= MERGE_COST_THRESHOLD[key]:
                olds[j] = _unite(key, group[i], olds[j])
                matched_new.add(i)
                matched_old.add(j)
        objects.extend(new for i, new in enumerate(group) if i not in matched_new)
        for j, old in enumerate(olds):
            if j not in matched_old:
                _close(key, old, end)


def merge_annotations(result: dict[str, Any], data: dict[str, Any], start: int,
                      overlap: int) -> None:
    """``AnnotationManager.merge``: tags, then shapes, then tracks; intervals appended."""
    for key in ("tags", "shapes", "tracks"):
        merge_objects(key, result[key], data.get(key, []), start, overlap)
    result["intervals"].extend(data.get("intervals", []))


# --- the server ---------------------------------------------------------------------------

class CvatTestServer:
    """The server: users, tasks, jobs, annotations, recorded requests. A context manager.

    ``strict``: refuse (400) what CVAT silently alters, drops or fails on (module docstring).
    """

    def __init__(self, frames: FrameStore, *, users: dict[str, str] | None = None,
                 tokens: dict[str, str] | None = None, strict: bool = True) -> None:
        self.frames = frames
        self.users = users if users is not None else {"alice": "alice-pass", "bob": "bob-pass"}
        self.tokens = tokens if tokens is not None else {"alice-token": "alice"}
        self.strict = strict
        self.sessions: dict[str, tuple[str, str]] = {}  # sessionid -> (user, csrftoken)
        self.projects: dict[int, FakeProject] = {}
        self.tasks: dict[int, FakeTask] = {}
        self.jobs: dict[int, FakeJob] = {}
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # tracebacks of unexpected 500s: bugs in this server
        self.lock = threading.RLock()
        self._task_ids = itertools.count(1)
        self._project_ids = itertools.count(1)
        self._job_ids = itertools.count(101)
        self._label_ids = itertools.count(1)
        self._spec_ids = itertools.count(1)
        # one sequence per table, as PostgreSQL's: explicit ids do not move them
        self._sequences = {kind: itertools.count(1) for kind in DB_TABLES}
        self._chunks: dict[tuple[int, int], bytes] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> CvatTestServer:
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self) -> CvatTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- set-up helpers for tests --
    def add_project(self, name: str, labels: list[str | dict[str, Any]], *,
                    owner: str = "alice") -> FakeProject:
        """A project with its labels (as :meth:`add_task` takes them); its tasks come from
        ``add_task(..., project=P)``."""
        with self.lock:
            project_id = next(self._project_ids)
            project = FakeProject(project_id, name, [], owner)
            project.labels.extend(self._label(None, x, project_id) for x in labels)
            self.projects[project_id] = project
            return project

    def add_task(self, name: str, labels: list[str | dict[str, Any]], *, size: int | None = None,
                 owner: str = "alice", jobs: list[tuple[int, int]] | None = None,
                 segment_size: int = 0, overlap: int | None = None,
                 project: FakeProject | None = None, **options: Any) -> FakeTask:
        """A task over frames of the store. Labels are names or dicts (name, type, attributes:
        [{name, mutable, default_value, values}]); a task in ``project`` has the project's
        labels (give ``labels=[]``).

        Jobs as CVAT makes them from ``segment_size`` and ``overlap`` (``segments``): by
        default one job; ``overlap`` None is CVAT's default (5 for video, 0 for images).
        ``jobs=[(start, stop), ...]`` sets the ranges instead (the overlap is then the one
        given, or the one the ranges have)."""
        with self.lock:
            task_id = next(self._task_ids)
            size = len(self.frames) - options.get("frame_offset", 0) if size is None else size
            if project is not None and labels:
                raise ValueError("a task in a project has the project's labels: give labels=[]")
            task = FakeTask(task_id, name, size, project.labels if project is not None else
                            [self._label(task_id, x) for x in labels], owner, project, **options)
            if jobs is None:
                ranges, task.segment_size, task.overlap = segments(
                    size, segment_size, overlap, task.mode)
            else:
                ranges = [(int(a), int(b)) for a, b in jobs]
                shared = {ranges[i][1] - ranges[i + 1][0] + 1 for i in range(len(ranges) - 1)}
                if overlap is None and len(shared) > 1:
                    raise ValueError(f"jobs {ranges} overlap unevenly: give overlap=")
                task.overlap = overlap if overlap is not None else max(shared | {0})
                task.segment_size = segment_size or max(b - a + 1 for a, b in ranges)
            for start, stop in ranges:
                job = FakeJob(next(self._job_ids), task_id, start, stop)
                task.jobs.append(job)
                self.jobs[job.id] = job
            self.tasks[task_id] = task
            return task

    def _label(self, task_id: int | None, spec: str | dict[str, Any],
               project_id: int | None = None) -> dict[str, Any]:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        attributes = [{
            "id": next(self._spec_ids), "name": a["name"], "mutable": bool(a.get("mutable")),
            "input_type": a.get("input_type", "select"),
            "default_value": a.get("default_value", a.get("values", [""])[0]),
            "values": list(a.get("values", [])),
        } for a in spec.get("attributes", [])]
        return {"id": next(self._label_ids), "name": spec["name"], "color": "#33ddff",
                "type": spec.get("type", "any"), "attributes": attributes, "sublabels": [],
                "has_parent": False, "task_id": task_id, "project_id": project_id,
                "parent_id": None,
                "svg": ""}

    def label_id(self, task: FakeTask, name: str) -> int:
        return next(label["id"] for label in task.labels if label["name"] == name)

    def seed(self, task: FakeTask, data: dict[str, list[dict[str, Any]]], *,
             job: FakeJob | None = None) -> dict[str, Any]:
        """Store annotations as a person would have in CVAT's UI, which saves into the job it
        has open (a job-level create): each object goes to ``job``, or to the first job whose
        frames hold all of its frames (a person cannot draw past a job's last frame; an
        object no single job holds is refused). Validated like a PUT, except that ids are
        kept when given, for convenience (CVAT refuses ids on create); the id sequences move
        past them. Returns what was stored, ids included."""
        with self.lock:
            validate_request(data, "LabeledDataRequest")
            data = self._normalized(data)
            self._check_shapes_of_tracks(data, strict=True)
            self._check_request(task, data, 0, task.size - 1, "task", "create")
            pieces: dict[int, dict[str, list]] = {j.id: _empty_rows() for j in task.jobs}
            for key in KEYS:
                for i, item in enumerate(data.get(key, [])):
                    frames = _frames_of(key, item)
                    holders = [j for j in ([job] if job else task.jobs)
                               if j.start <= min(frames) and max(frames) <= j.stop]
                    if not holders:
                        raise ValueError(f"seed {key}[{i}] (frames {min(frames)}-"
                                         f"{max(frames)}) fits no single job of task {task.id}: "
                                         "seed it per job, or write it at task level")
                    pieces[holders[0].id][key].append(item)
            stored = _empty_rows()
            with self.transaction(task):
                for target in task.jobs:
                    created = self._create_rows(task, target, pieces[target.id], seeding=True)
                    for key in KEYS:
                        stored[key].extend(created[key])
            return {"version": 0, **stored}

    def stored(self, task: FakeTask) -> dict[str, Any]:
        """The annotations as a GET of the task returns them now (the jobs merged)."""
        with self.lock:
            return self.read_task(task)

    def stored_job(self, job: FakeJob) -> dict[str, Any]:
        """One job's rows as a GET of the job returns them (attributes filled in); the raw
        rows are ``job.annotations``."""
        with self.lock:
            return self.read_job(job)

    def recorded(self, *, task: FakeTask | None = None, methods: tuple[str, ...] | None = None,
                 route: str | None = None) -> list[Recorded]:
        with self.lock:
            items = list(self.requests)
        if task is not None:
            prefix = f"/api/tasks/{task.id}"
            job_prefixes = tuple(f"/api/jobs/{job.id}" for job in task.jobs)
            items = [r for r in items if r.path.startswith(prefix)
                     or r.path.startswith(job_prefixes)
                     or r.query.get("task_id") == [str(task.id)]]
        if methods is not None:
            items = [r for r in items if r.method in methods]
        if route is not None:
            items = [r for r in items if r.route == route]
        return items

    def unknown_requests(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.route is None]

    # -- requests: validation --
    @staticmethod
    def check_ids(data: dict[str, Any], action: str) -> None:
        """The id rule of ``LabeledDataSerializer`` with ``annotation_action`` (cvat-ai/cvat PR
        #9583): create (and PUT) refuse ids, tracked shapes included; delete requires them;
        update takes both (an object without id is created). DRF-shaped 400."""
        if action not in ("create", "delete"):
            return
        errors: dict[str, list[dict[str, Any]]] = {}

        def problem(item: dict[str, Any]) -> list[str] | None:
            has = item.get("id") is not None
            if action == "create" and has:
                return [ID_ABSENT]
            if action == "delete" and not has:
                return [ID_REQUIRED]
            return None

        for key in KEYS:
            items = data.get(key) or []
            listed = []
            for item in items:
                entry: dict[str, Any] = {}
                if (message := problem(item)) is not None:
                    entry["id"] = message
                if key == "tracks" and action == "create":
                    shapes = [{"id": [ID_ABSENT]} if s.get("id") is not None else {}
                              for s in item.get("shapes", [])]
                    if any(shapes):
                        entry["shapes"] = shapes
                listed.append(entry)
            if any(listed):
                errors[key] = listed
        if errors:
            raise ServerError(400, errors)

    @staticmethod
    def _normalized(data: dict[str, Any]) -> dict[str, Any]:
        """A request body with the serializers' defaults filled in (``AnnotationSerializer``,
        ``ShapeSerializer``, ``TrackedShapeSerializer``): what the job code receives."""
        def common(item: dict[str, Any]) -> dict[str, Any]:
            return {"id": item.get("id"), "frame": int(item["frame"]),
                    "label_id": item["label_id"], "group": item.get("group"),
                    "source": item.get("source", "manual"),
                    "attributes": [{"spec_id": a["spec_id"], "value": str(a["value"])}
                                   for a in item.get("attributes", [])]}

        def geometry(item: dict[str, Any]) -> dict[str, Any]:
            return {"type": item["type"], "occluded": bool(item.get("occluded", False)),
                    "outside": bool(item.get("outside", False)),
                    "z_order": int(item.get("z_order", 0)),
                    "rotation": float(item.get("rotation", 0.0)),
                    "points": [float(p) for p in item.get("points", [])]}

        out: dict[str, list[dict[str, Any]]] = _empty_rows()
        for tag in data.get("tags") or []:
            out["tags"].append(common(tag))
        for shape in data.get("shapes") or []:
            row = {**common(shape), **geometry(shape), "elements": []}
            if "score" in shape:
                row["score"] = float(shape["score"])
            if shape.get("elements"):
                row["elements"] = copy.deepcopy(shape["elements"])
            out["shapes"].append(row)
        for track in data.get("tracks") or []:
            shapes = [{"id": s.get("id"), "frame": int(s["frame"]), **geometry(s),
                       "attributes": [{"spec_id": a["spec_id"], "value": str(a["value"])}
                                      for a in s.get("attributes", [])]}
                      for s in track.get("shapes", [])]
            out["tracks"].append({**common(track), "shapes": shapes,
                                  "elements": copy.deepcopy(track.get("elements") or [])})
        for interval in data.get("intervals") or []:
            row = {"id": interval.get("id"), "label_id": interval["label_id"],
                   "group": interval.get("group"), "source": interval.get("source", "manual"),
                   "attributes": [{"spec_id": a["spec_id"], "value": str(a["value"])}
                                  for a in interval.get("attributes", [])],
                   "start": int(interval["start"]), "stop": interval.get("stop")}
            if "score" in interval:
                row["score"] = float(interval["score"])
            out["intervals"].append(row)
        return out

    def _check_request(self, task: FakeTask, data: dict[str, Any], lo: int, hi: int,
                       where: str, action: str | None = None) -> None:
        """Checks on a body before any job is touched: the source choices and skeletons, and
        in strict mode what CVAT silently alters or drops (see the module docstring); frames
        are not checked on a job-level delete, nor are a deleted track's shapes: CVAT's
        ``JobAnnotation._delete`` (cvat/apps/dataset_manager/task.py) deletes by id alone, so
        a track read with two shapes on one frame (CVAT's own slice makes some) is deleted."""
        for key in KEYS:
            for i, item in enumerate(data.get(key, [])):
                if item["source"] not in SOURCES:
                    raise _bad(f"{key}[{i}]: source: \"{item['source']}\" is not a valid "
                               "choice.")
                if item.get("elements"):
                    raise _bad(f"{key}[{i}]: skeleton elements are not modelled by the test "
                               "server")
        if action != "delete":  # JobAnnotation._delete goes by ids alone: no interpolation
            self._check_shapes_of_tracks(data, strict=self.strict)
        if not self.strict:
            return
        drop = ("a task-level write drops it" if where == "task"
                else "CVAT stores it in this job anyway")
        check_frames = not (where == "job" and action == "delete")
        for key in KEYS:
            for i, item in enumerate(data.get(key, [])):
                for frame in _frames_of(key, item) if check_frames else ():
                    if not lo <= frame <= hi:
                        raise _bad(f"{key}[{i}]: frame {frame} is outside frames {lo}-{hi} of "
                                   f"this {where} ({drop}; refused by the strict test server)")
                shapes = item["shapes"] if key == "tracks" else [item] if key == "shapes" else []
                for shape in shapes:
                    if shape["type"] == "rectangle" and len(shape["points"]) != 4:
                        raise _bad(f"{key}[{i}]: a rectangle needs 4 points, got "
                                   f"{len(shape['points'])} (strict test server)")
                if key == "tracks" and item["frame"] != min(s["frame"] for s in item["shapes"]):
                    raise _bad(f"tracks[{i}]: track frame {item['frame']} is not its first "
                               f"shape's {min(s['frame'] for s in item['shapes'])} (CVAT would "
                               "move the track or add an outside shape; refused by the strict "
                               "test server)")

    @staticmethod
    def _check_shapes_of_tracks(data: dict[str, Any], *, strict: bool) -> None:
        """Tracks CVAT cannot cut or read (500 there): refused in strict mode."""
        if not strict:
            return
        for i, track in enumerate(data.get("tracks", [])):
            frames = [s["frame"] for s in track["shapes"]]
            if not frames:
                raise _bad(f"tracks[{i}]: a track needs at least one shape (CVAT fails with 500 "
                           "when it cuts one into jobs)")
            if len(frames) != len(set(frames)):
                raise _bad(f"tracks[{i}]: two shapes on one frame: {sorted(frames)} (CVAT "
                           "fails with 500 when it interpolates the track)")
            if len({s["type"] for s in track["shapes"]}) > 1:
                raise _bad(f"tracks[{i}]: shapes of different types (CVAT fails with 500 "
                           "when it interpolates the track)")

    # -- rows (JobAnnotation) --
    def _ids_in_use(self) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {kind: set() for kind in DB_TABLES}
        for job in self.jobs.values():
            for key in KEYS:
                for row in job.annotations[key]:
                    used[key].add(row["id"])
                    if key == "tracks":
                        used["tracked_shapes"].update(s["id"] for s in row["shapes"])
        return used

    def _allocate(self, kind: str, given: int | None, used: dict[str, set[int]], *,
                  seeding: bool) -> int:
        """An id for a new row: the given one (update; seeding) or the table's next value.
        Either one taken is PostgreSQL's duplicate key error."""
        if given is None:
            value = next(self._sequences[kind])
        else:
            value = int(given)
            if seeding:
                current = next(self._sequences[kind])
                self._sequences[kind] = itertools.count(max(current, value + 1))
        if value in used[kind]:
            raise ServerError(400, f'duplicate key value violates unique constraint '
                                   f'"{DB_TABLES[kind]}_pkey"\nDETAIL:  Key (id)=({value}) '
                                   'already exists.\n')
        used[kind].add(value)
        return value

    def _create_rows(self, task: FakeTask, job: FakeJob, data: dict[str, Any], *,
                     seeding: bool = False) -> dict[str, Any]:
        """``JobAnnotation._create``: validate labels and attributes, fix track frames, give
        ids and store the rows in ``job``. Returns the created objects (``ir_data``)."""
        labels = {label["id"]: label for label in task.labels}

        def label_of(item: dict[str, Any]) -> dict[str, Any]:
            if item["label_id"] not in labels:
                raise _bad(f"label_id `{item['label_id']}` is invalid")
            return labels[item["label_id"]]

        def check_attributes(values: list[dict[str, Any]], label: dict[str, Any],
                             kind: str) -> None:
            specs = {a["id"] for a in label["attributes"]
                     if kind == "all" or a["mutable"] == (kind == "mutable")}
            for value in values:
                if value["spec_id"] not in specs:
                    raise _bad(f"spec_id `{value['spec_id']}` is invalid")

        used = self._ids_in_use()
        created: dict[str, list[dict[str, Any]]] = _empty_rows()
        for key in ("tags", "shapes", "intervals"):
            for item in data.get(key, []):
                row = copy.deepcopy(item)
                check_attributes(row["attributes"], label_of(row), "all")
                row["id"] = self._allocate(key, row.get("id"), used, seeding=seeding)
                created[key].append(row)
        for item in data.get("tracks", []):
            row = copy.deepcopy(item)
            _correct_frame_of_tracked_shapes(row)
            label = label_of(row)
            check_attributes(row["attributes"], label, "immutable")
            for shape in row["shapes"]:
                check_attributes(shape["attributes"], label, "mutable")
            row["id"] = self._allocate("tracks", row.get("id"), used, seeding=seeding)
            for shape in row["shapes"]:
                shape["id"] = self._allocate("tracked_shapes", shape.get("id"), used,
                                             seeding=seeding)
            row["elements"] = []
            created["tracks"].append(row)
        for key in KEYS:
            job.annotations[key].extend(copy.deepcopy(created[key]))
        return created

    @staticmethod
    def _delete_rows(job: FakeJob, data: dict[str, Any] | None) -> None:
        """``JobAnnotation._delete``: all rows, or the rows of this job with the ids given
        (ids other jobs hold, or none, are skipped silently)."""
        for key in KEYS:
            if data is None:
                job.annotations[key] = []
            else:
                ids = {item.get("id") for item in data.get(key, [])}
                job.annotations[key] = [r for r in job.annotations[key] if r["id"] not in ids]

    def job_action(self, task: FakeTask, job: FakeJob, action: str | None,
                   data: dict[str, Any]) -> dict[str, Any]:
        """``put_job_data`` (action None) / ``patch_job_data``: what the job answers."""
        if action is None:  # JobAnnotation.put: delete everything, then create
            self._delete_rows(job, None)
            result = self._create_rows(task, job, data)
        elif action == "create":
            result = self._create_rows(task, job, data)
        elif action == "update":  # delete the ids given, then create them again
            self._delete_rows(job, data)
            result = self._create_rows(task, job, data)
        else:  # delete: answers what it was given
            self._delete_rows(job, data)
            result = {key: copy.deepcopy(data.get(key, [])) for key in KEYS}
        return {"version": 0, **{key: result.get(key, []) for key in KEYS}}

    def task_action(self, task: FakeTask, action: str | None,
                    data: dict[str, Any]) -> dict[str, Any]:
        """``TaskAnnotation._patch_data``: cut the body per job, run the job action on each
        piece (every job, in order), merge the answers."""
        result: dict[str, Any] = {"version": 0, **_empty_rows()}
        for job in task.jobs:
            piece = slice_annotations(data, job.start, job.stop)
            piece["intervals"] = [i for i in data.get("intervals", [])
                                  if _interval_job(task, i) is job]
            answer = self.job_action(task, job, action, piece)
            merge_annotations(result, answer, job.start, task.overlap)
        return result

    def transaction(self, task: FakeTask) -> _Transaction:
        """Roll every job of ``task`` back if the block fails (``@transaction.atomic``); the id
        sequences are not rolled back (PostgreSQL's are not)."""
        return _Transaction(task)

    # -- reads --
    def read_job(self, job: FakeJob) -> dict[str, Any]:
        """``JobAnnotation.init_from_db``: the rows, with every attribute of the label filled
        in (``_extend_attributes``: tags and shapes all, tracks the immutable ones, tracked
        shapes the mutable ones from the previous shape); shapes and tags by frame, tracks by
        id with their shapes by frame."""
        task = self.tasks[job.task_id]
        labels = {label["id"]: label for label in task.labels}

        def extend(values: list[dict[str, Any]], specs: list[dict[str, Any]],
                   inherited: dict[int, str] | None = None) -> list[dict[str, Any]]:
            have = {a["spec_id"] for a in values}
            out = list(values)
            for spec in specs:
                if spec["id"] not in have:
                    value = (inherited or {}).get(spec["id"], spec["default_value"])
                    out.append({"spec_id": spec["id"], "value": value})
            return out

        result: dict[str, Any] = {"version": 0}
        for key in KEYS:
            items = []
            for row in job.annotations[key]:
                item = copy.deepcopy(row)
                specs = labels[item["label_id"]]["attributes"]
                if key == "tracks":
                    item["attributes"] = extend(item["attributes"],
                                                [s for s in specs if not s["mutable"]])
                    item["shapes"].sort(key=lambda s: (s["frame"], s["id"]))
                    previous: dict[int, str] = {}
                    for shape in item["shapes"]:
                        shape["attributes"] = extend(shape["attributes"],
                                                     [s for s in specs if s["mutable"]], previous)
                        previous = {a["spec_id"]: a["value"] for a in shape["attributes"]}
                else:
                    item["attributes"] = extend(item["attributes"], specs)
                items.append(item)
            if key in ("tags", "shapes"):
                items.sort(key=lambda x: (x["frame"], x["id"]))
            else:
                items.sort(key=lambda x: x["id"])
            result[key] = items
        return result

    def read_task(self, task: FakeTask) -> dict[str, Any]:
        """``TaskAnnotation.init_from_db``: each job read, merged in job order."""
        result: dict[str, Any] = {"version": 0, **_empty_rows()}
        for job in task.jobs:
            merge_annotations(result, self.read_job(job), job.start, task.overlap)
        return result

    # -- media --
    def chunk(self, task: FakeTask, number: int) -> tuple[bytes, str]:
        first = number * task.chunk_size
        if number < 0 or first >= task.size:
            raise _bad(f"The chunk number {number} doesn't exist")
        if number in task.broken_chunks:
            return b"PK\x03\x04 this is not a chunk", "application/zip"
        key = (task.id, number)
        with self.lock:
            cached = self._chunks.get(key)
        if cached is None:
            indexes = range(first, min(first + task.chunk_size, task.size))
            cached = (self._zip(task, indexes) if task.chunk_type == "imageset"
                      else self._mp4(task, indexes))
            with self.lock:
                self._chunks[key] = cached
        return cached, "application/zip" if task.chunk_type == "imageset" else "video/mp4"

    def _zip(self, task: FakeTask, indexes: range) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for i in indexes:
                archive.writestr(f"{i:06d}.jpeg", self.frames.jpegs[task.frame_offset + i])
        return buffer.getvalue()

    def _mp4(self, task: FakeTask, indexes: range) -> bytes:
        handle, path = tempfile.mkstemp(suffix=".mp4")
        os.close(handle)
        try:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0,
                                     (self.frames.width, self.frames.height))
            try:
                for i in indexes:
                    writer.write(self.frames.image(task.frame_offset + i))
            finally:
                writer.release()
            return Path(path).read_bytes()
        finally:
            os.unlink(path)

    # -- JSON documents --
    def task_json(self, task: FakeTask) -> dict[str, Any]:
        return {
            "url": f"{self.url}/api/tasks/{task.id}", "id": task.id, "name": task.name,
            "project_id": task.project.id if task.project else None,
            "project_name": task.project.name if task.project else None,
            "owner": self._user_json(task.owner), "bug_tracker": "",
            "created_date": DATE, "updated_date": DATE, "overlap": task.overlap,
            "segment_size": task.segment_size,
            "status": "annotation", "data_chunk_size": task.chunk_size,
            "data_original_chunk_type": task.chunk_type,
            "data_compressed_chunk_type": task.chunk_type, "data_cloud_storage_id": None,
            "guide_id": None, "size": task.size, "image_quality": 70, "data": task.id,
            "dimension": task.dimension, "mode": task.mode, "media_type": "image",
            "subset": "", "organization": None, "organization_id": None,
            "assignee_updated_date": None, "validation_mode": None,
            "jobs": {"count": len(task.jobs),
                     "completed": sum(j.state == "completed" for j in task.jobs),
                     "validation": sum(j.stage == "validation" for j in task.jobs),
                     "url": f"{self.url}/api/jobs?task_id={task.id}"},
            "labels": {"url": f"{self.url}/api/labels?task_id={task.id}"},
        }

    def job_json(self, job: FakeJob) -> dict[str, Any]:
        task = self.tasks[job.task_id]
        if job.state not in JOB_STATES or job.stage not in JOB_STAGES:
            raise ValueError(f"job {job.id}: state {job.state!r} / stage {job.stage!r} is not "
                             f"one of {JOB_STATES} / {JOB_STAGES}")
        # engine/serializers.py JobWriteSerializer.update: status follows the stage
        status = ("annotation" if job.stage == "annotation" else "completed"
                  if job.stage == "acceptance" and job.state == "completed" else "validation")
        return {
            "url": f"{self.url}/api/jobs/{job.id}", "id": job.id, "task_id": task.id,
            "task_name": task.name, "project_id": task.project.id if task.project else None,
            "project_name": task.project.name if task.project else None,
            "guide_id": None, "dimension": task.dimension, "mode": task.mode,
            "media_type": "image", "bug_tracker": None, "status": status,
            "stage": job.stage, "state": job.state, "frame_count": job.stop - job.start + 1,
            "start_frame": job.start, "stop_frame": job.stop,
            "data_chunk_size": task.chunk_size, "data_compressed_chunk_type": task.chunk_type,
            "data_original_chunk_type": task.chunk_type, "created_date": DATE,
            "updated_date": DATE, "type": job.type, "organization": None,
            "assignee_updated_date": None, "parent_job_id": None, "replicas_count": 0,
            "issues": {"url": f"{self.url}/api/issues?job_id={job.id}", "count": 0},
            "labels": {"url": f"{self.url}/api/labels?job_id={job.id}"},
        }

    def project_json(self, project: FakeProject) -> dict[str, Any]:
        """``ProjectReadSerializer``: the project and links to its tasks and labels."""
        tasks = [t for t in self.tasks.values() if t.project is project]
        return {
            "url": f"{self.url}/api/projects/{project.id}", "id": project.id,
            "name": project.name, "owner": self._user_json(project.owner), "assignee": None,
            "guide_id": None, "bug_tracker": "", "task_subsets": [], "created_date": DATE,
            "updated_date": DATE, "status": "annotation", "dimension": "2d" if tasks else None,
            "organization": None, "organization_id": None, "assignee_updated_date": None,
            "tasks": {"count": len(tasks), "url": f"{self.url}/api/tasks?project_id={project.id}"},
            "labels": {"url": f"{self.url}/api/labels?project_id={project.id}"},
        }

    @staticmethod
    def may_see(task: FakeTask, user: str | None) -> bool:
        """tasks.rego ``is_task_staff``: the task's owner or assignees, or its project's."""
        project = task.project
        return (user == task.owner or user in task.users or project is not None
                and (user == project.owner or user in project.users))

    def meta_json(self, task: FakeTask) -> dict[str, Any]:
        if task.mode == "interpolation":
            frames = [{"name": "vtest.avi", "width": self.frames.width,
                       "height": self.frames.height, "related_files": 0,
                       "has_related_context": False}]
        else:
            frames = [{"name": f"frame_{i:06d}.jpg", "width": self.frames.width,
                       "height": self.frames.height, "related_files": 0,
                       "has_related_context": False} for i in range(task.size)]
        return {"chunks_updated_date": DATE, "chunk_size": task.chunk_size, "size": task.size,
                "image_quality": 70, "start_frame": task.frame_offset,
                "stop_frame": task.frame_offset + task.size - 1, "frame_filter": "",
                "frames": frames, "deleted_frames": list(task.deleted_frames),
                "included_frames": None, "chapters": None, "storage": "local",
                "cloud_storage_id": None}

    def _user_json(self, name: str) -> dict[str, Any]:
        return {"url": f"{self.url}/api/users/{name}", "id": sorted(self.users).index(name) + 1,
                "username": name, "first_name": "", "last_name": ""}


class _Transaction:
    def __init__(self, task: FakeTask) -> None:
        self.task = task
        self.saved: list[dict[str, list]] = []

    def __enter__(self) -> None:
        self.saved = [copy.deepcopy(job.annotations) for job in self.task.jobs]

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            for job, rows in zip(self.task.jobs, self.saved, strict=True):
                job.annotations = rows


def _frames_of(key: str, item: dict[str, Any]) -> list[int]:
    if key == "tracks":
        return [s["frame"] for s in item["shapes"]] or [item["frame"]]
    if key == "intervals":
        return [item["start"]] + ([item["stop"]] if item.get("stop") is not None else [])
    return [item["frame"]]


def _interval_job(task: FakeTask, interval: dict[str, Any]) -> FakeJob | None:
    """Intervals (audio) go to the first job holding their start (simplified, not CVAT's)."""
    return next((j for j in task.jobs if j.start <= interval["start"] <= j.stop), None)


def _correct_frame_of_tracked_shapes(track: dict[str, Any]) -> None:
    """``JobAnnotation._correct_frame_of_tracked_shapes``: a track whose frame precedes its
    first shape gets an outside copy of that shape there (no id); one whose first shape comes
    earlier takes that shape's frame."""
    shapes = sorted(track["shapes"], key=lambda s: s["frame"])
    if not shapes:
        return
    first = shapes[0]
    if track["frame"] < first["frame"]:
        missing = copy.deepcopy(first)
        missing["frame"] = track["frame"]
        missing["outside"] = True
        missing["id"] = None
        track["shapes"].append(missing)
    elif first["frame"] < track["frame"]:
        track["frame"] = first["frame"]


# --- HTTP ---------------------------------------------------------------------------------

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern + r"/?$"), name) for method, pattern, name in [
        ("GET", r"/api/server/about", "about"),
        ("POST", r"/api/auth/login", "login"),
        ("GET", r"/api/tasks/(?P<id>\d+)", "task_read"),
        ("GET", r"/api/tasks/(?P<id>\d+)/data/meta", "task_meta"),
        ("GET", r"/api/tasks/(?P<id>\d+)/data", "task_data"),
        ("GET", r"/api/tasks/(?P<id>\d+)/annotations", "task_annotations_get"),
        ("PUT", r"/api/tasks/(?P<id>\d+)/annotations", "task_annotations_put"),
        ("PATCH", r"/api/tasks/(?P<id>\d+)/annotations", "task_annotations_patch"),
        ("DELETE", r"/api/tasks/(?P<id>\d+)/annotations", "task_annotations_delete"),
        ("GET", r"/api/jobs/(?P<id>\d+)", "job_read"),
        ("GET", r"/api/jobs/(?P<id>\d+)/annotations", "job_annotations_get"),
        ("PUT", r"/api/jobs/(?P<id>\d+)/annotations", "job_annotations_put"),
        ("PATCH", r"/api/jobs/(?P<id>\d+)/annotations", "job_annotations_patch"),
        ("DELETE", r"/api/jobs/(?P<id>\d+)/annotations", "job_annotations_delete"),
        ("GET", r"/api/jobs", "jobs_list"),
        ("GET", r"/api/labels", "labels"),
        ("GET", r"/api/projects/(?P<id>\d+)", "project_read"),
        ("GET", r"/api/tasks", "tasks_list"),
    ]
]
_PUBLIC = {"about", "login"}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class _Handler(BaseHTTPRequestHandler):
    app: CvatTestServer
    protocol_version = "HTTP/1.1"
    server_version = "cvat-test-server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        app = self.app
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"detail": "body too large"})
            return
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        route, params = None, {}
        for route_method, pattern, name in _ROUTES:
            match = pattern.match(parts.path)
            if match and route_method == method:
                route, params = name, match.groupdict()
                break
        record = Recorded(method, parts.path, query, None, 0, route)
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ServerError(400, {"detail": "JSON parse error"}) from None
                record.body = body
            if route is None:
                raise ServerError(404, {"detail": "Not found."})
            if route not in _PUBLIC:
                record.user = self._authenticate(method)
            status, payload, content_type, headers = getattr(self, "_" + route)(
                params, query, body, record.user)
        except ServerError as exc:
            status, payload, content_type, headers = exc.status, exc.body, None, {}
        except Exception:  # noqa: BLE001 (a bug in this server: answer 500, keep the trace)
            with app.lock:
                app.errors.append(traceback.format_exc())
            status, payload, content_type, headers = 500, {"detail": "server error"}, None, {}
        record.status = status
        with app.lock:
            app.requests.append(record)
        self._send(status, payload, content_type, headers)

    def _send(self, status: int, payload: Any, content_type: str | None = None,
              headers: dict[str, list[str]] | None = None) -> None:
        if isinstance(payload, bytes):
            data = payload
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode("utf-8")
            content_type = content_type or "application/json"
        self.send_response(status)
        if data or content_type:
            self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for name, values in (headers or {}).items():
            for value in values:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # -- auth --
    def _authenticate(self, method: str) -> str:
        app = self.app
        authorization = self.headers.get("Authorization") or ""
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or credential not in app.tokens:
                raise ServerError(401, {"detail": "Invalid token."})
            return app.tokens[credential]
        cookies = SimpleCookie(self.headers.get("Cookie") or "")
        session = cookies.get("sessionid")
        with app.lock:
            found = app.sessions.get(session.value) if session else None
        if found is None:
            raise ServerError(401, {"detail": "Authentication credentials were not provided."})
        user, csrf = found
        if method in _UNSAFE:
            cookie = cookies.get("csrftoken")
            header = self.headers.get("X-CSRFToken")
            if not header or cookie is None or header != cookie.value or header != csrf:
                raise ServerError(403, {"detail": "CSRF Failed: CSRF token missing or "
                                                  "incorrect."})
        return user

    @staticmethod
    def _json(payload: Any, model: str | None) -> tuple[int, Any, None, dict]:
        if model is not None:
            validate_response(payload, model)
        return 200, payload, None, {}

    # -- endpoints --
    def _about(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        return self._json({"name": "Computer Vision Annotation Tool",
                           "description": "CVAT-compatible test server", "version": SERVER_VERSION,
                           "logo_url": "", "subtitle": ""}, "About")

    def _login(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        validate_request(body, "LoginSerializerExRequest")
        name = body.get("username") or body.get("email")
        if name not in self.app.users or self.app.users[name] != body["password"]:
            raise ServerError(400, {"non_field_errors": [
                "Unable to log in with provided credentials."]})
        session, csrf = secrets.token_hex(16), secrets.token_hex(16)
        with self.app.lock:
            self.app.sessions[session] = (name, csrf)
        payload = {"key": secrets.token_hex(20)}
        validate_response(payload, "Token")
        cookies = [f"sessionid={session}; HttpOnly; Path=/; SameSite=Lax",
                   f"csrftoken={csrf}; Path=/; SameSite=Lax"]
        return 200, payload, None, {"Set-Cookie": cookies}

    def _find_task(self, task_id: str, user: str | None) -> FakeTask:
        task = self.app.tasks.get(int(task_id))
        if task is None:
            raise ServerError(404, {"detail": "Not found."})
        if not self.app.may_see(task, user):
            raise ServerError(403, {"detail": "You do not have permission to perform this "
                                              "action."})
        return task

    def _find_project(self, project_id: str, user: str | None) -> FakeProject:
        """``ProjectViewSet.get_object``: 404 for an unknown id, 403 for a user who is not its
        owner or assignee (projects.rego)."""
        project = self.app.projects.get(int(project_id))
        if project is None:
            raise ServerError(404, {"detail": "Not found."})
        if user != project.owner and user not in project.users:
            raise ServerError(403, {"detail": "You do not have permission to perform this "
                                              "action."})
        return project

    def _project_read(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        """``ProjectViewSet.retrieve``."""
        return self._json(self.app.project_json(self._find_project(params["id"], user)),
                          "ProjectRead")

    def _task_read(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        return self._json(self.app.task_json(self._find_task(params["id"], user)), "TaskRead")

    def _task_meta(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        return self._json(self.app.meta_json(self._find_task(params["id"], user)),
                          "DataMetaRead")

    def _task_data(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        kind = query.get("type", [""])[0]
        quality = query.get("quality", ["compressed"])[0]
        if quality not in ("compressed", "original"):
            raise _bad(f"Wrong quality value: {quality!r}")
        try:
            number = int(query.get("number", [""])[0])
        except ValueError:
            raise _bad("The number parameter must be an integer") from None
        if kind == "chunk":
            data, content_type = self.app.chunk(task, number)
            return 200, data, content_type, {}
        if kind == "frame":
            if not 0 <= number < task.size:
                raise _bad(f"The frame number {number} doesn't exist")
            return 200, self.app.frames.jpegs[task.frame_offset + number], "image/jpeg", {}
        raise _bad(f"Unsupported data type {kind!r}")

    # -- annotations (engine/views.py TaskViewSet.annotations, JobViewSet.annotations) --
    _EXPORT_PARAMS = frozenset({"format", "filename", "location", "action",
                                "cloud_storage_id"})

    @staticmethod
    def _gone(kind: str) -> tuple:
        """``get_410_response_for_export_api``: GET .../annotations no longer exports."""
        text = (f"This endpoint no longer handles exporting: use /api/{kind}s/id/dataset/export"
                "?save_images=False")
        return 410, text.encode(), "text/plain; charset=utf-8", {}

    @staticmethod
    def _action(query: dict) -> str:
        action = query.get("action", [""])[0]
        if action not in ("create", "update", "delete"):
            raise _bad("Please specify a correct 'action' for the request")
        return action

    def _write(self, task: FakeTask, job: FakeJob | None, action: str | None,
               body: Any) -> dict[str, Any]:
        """Validate a body as the view does (schema, then the id rule of the action; a PUT
        counts as create), then write it to the task (cut per job) or to one job."""
        app = self.app
        validate_request(body, "LabeledDataRequest" if action is None
                         else "PatchedLabeledDataRequest")
        app.check_ids(body, action or "create")
        data = app._normalized(body)
        with app.lock:
            if job is None:
                app._check_request(task, data, 0, task.size - 1, "task", action)
            else:
                app._check_request(task, data, job.start, job.stop, "job", action)
            try:
                with app.transaction(task):
                    if job is None:
                        return app.task_action(task, action, data)
                    return app.job_action(task, job, action, data)
            except ServerError as exc:
                if job is None and action is None and isinstance(exc.body, str):
                    # put_task_data does not catch IntegrityError: a server error
                    raise ServerError(500, {"detail": f"IntegrityError: {exc.body}"}) from None
                raise

    def _task_annotations_get(self, params: dict, query: dict, body: Any,
                              user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        if self._EXPORT_PARAMS & set(query):
            return self._gone("task")
        with self.app.lock:
            return self._json(self.app.read_task(task), "LabeledData")

    def _task_annotations_put(self, params: dict, query: dict, body: Any,
                              user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        if {"format", "rq_id"} & set(query):
            raise ServerError(410, {"detail": "importing is not modelled by the test server"})
        return self._json(self._write(task, None, None, body), "LabeledData")

    def _task_annotations_patch(self, params: dict, query: dict, body: Any,
                                user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        action = self._action(query)
        return self._json(self._write(task, None, action, body), "LabeledData")

    def _task_annotations_delete(self, params: dict, query: dict, body: Any,
                                 user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        with self.app.lock:
            for job in task.jobs:  # TaskAnnotation.delete(): delete_job_data for every job
                self.app._delete_rows(job, None)
        return 204, None, None, {}

    def _job_read(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        return self._json(self.app.job_json(job), "JobRead")

    def _find_job(self, job_id: str, user: str | None) -> tuple[FakeTask, FakeJob]:
        job = self.app.jobs.get(int(job_id))
        if job is None:
            raise ServerError(404, {"detail": "Not found."})
        return self._find_task(str(job.task_id), user), job

    def _job_annotations_get(self, params: dict, query: dict, body: Any,
                             user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        if self._EXPORT_PARAMS & set(query):
            return self._gone("job")
        with self.app.lock:
            return self._json(self.app.read_job(job), "LabeledData")

    def _job_annotations_put(self, params: dict, query: dict, body: Any,
                             user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        if {"format", "rq_id"} & set(query):
            raise ServerError(410, {"detail": "importing is not modelled by the test server"})
        return self._json(self._write(task, job, None, body), "LabeledData")

    def _job_annotations_patch(self, params: dict, query: dict, body: Any,
                               user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        action = self._action(query)
        return self._json(self._write(task, job, action, body), "LabeledData")

    def _job_annotations_delete(self, params: dict, query: dict, body: Any,
                                user: str | None) -> tuple:
        _, job = self._find_job(params["id"], user)
        with self.app.lock:
            self.app._delete_rows(job, None)
        return 204, None, None, {}

    # -- lists --
    def _page(self, query: dict, items: list[Any], path: str, model: str) -> tuple:
        """A DRF page (``page``, ``page_size``; 10 by default); a bad page is a 404."""
        try:
            page = int(query.get("page", ["1"])[0])
            size = int(query.get("page_size", ["10"])[0])
        except ValueError:
            raise ServerError(404, {"detail": "Invalid page."}) from None
        if page < 1 or size < 1 or (page > 1 and (page - 1) * size >= len(items)):
            raise ServerError(404, {"detail": "Invalid page."})
        kept = urlencode([(k, v[0]) for k, v in query.items() if k != "page"])
        base = f"{self.app.url}{path}?{kept}{'&' if kept else ''}"
        more = page * size < len(items)
        return self._json({"count": len(items), "results": items[(page - 1) * size:page * size],
                           "next": f"{base}page={page + 1}" if more else None,
                           "previous": f"{base}page={page - 1}" if page > 1 else None}, model)

    def _jobs_list(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        """``JobViewSet.list``: jobs of tasks the user may see, newest first (``-id``), with
        the simple filters ``task_id``, ``state``, ``stage``, ``type``; what cvat-sdk's
        ``task.get_jobs()`` sends is ``org=&task_id=N&page=P``."""
        unmodelled = set(query) & {"sort", "filter", "search", "assignee", "project_id",
                                   "project_name", "task_name", "dimension", "parent_job_id"}
        if unmodelled:
            raise _bad(f"the test server does not model job list parameters {sorted(unmodelled)}")
        if "task_id" not in query:
            raise _bad("the test server lists jobs by task_id only")
        try:
            task_id = int(query["task_id"][0])
        except ValueError:
            raise _bad("task_id: A valid integer is required.") from None
        with self.app.lock:
            task = self.app.tasks.get(task_id)
            visible = task is not None and self.app.may_see(task, user)
            jobs = sorted(task.jobs if visible else [], key=lambda j: -j.id)
            for name in ("state", "stage", "type"):
                if name in query:
                    jobs = [j for j in jobs if getattr(j, name) == query[name][0]]
            return self._page(query, [self.app.job_json(j) for j in jobs], "/api/jobs",
                              "PaginatedJobReadList")

    def _labels(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        """``LabelViewSet.get_queryset`` for a list: by job, task (a project task's are the
        project's: ``task.get_labels()``) or project; one of them at a time. An unknown id
        is a 404 here (CVAT's ``objects.get`` raises DoesNotExist: its answer not read)."""
        scopes = [key for key in ("job_id", "task_id", "project_id") if key in query]
        if len(scopes) > 1:
            raise _bad("job_id, task_id and project_id parameters cannot be used together")
        if "task_id" in query:
            labels = self._find_task(query["task_id"][0], user).labels
        elif "job_id" in query:
            labels = self._find_job(query["job_id"][0], user)[0].labels
        elif "project_id" in query:
            labels = self._find_project(query["project_id"][0], user).labels
        else:
            raise _bad("the test server lists labels by job_id, task_id or project_id only")
        return self._page(query, labels, "/api/labels", "PaginatedLabelList")

    def _tasks_list(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        """``TaskViewSet.list``: tasks the user may see (tasks.rego's sandbox list filter),
        newest first (``-id``), with the simple filter ``project_id``; cvat-sdk's
        ``tasks_api.list(project_id=P, page=N)`` sends ``project_id=P&page=N``."""
        modelled = {"project_id", "page", "page_size", "org"}
        if set(query) - modelled:
            raise _bad("the test server does not model task list parameters "
                       f"{sorted(set(query) - modelled)}")
        with self.app.lock:
            tasks = [t for t in self.app.tasks.values() if self.app.may_see(t, user)]
            if "project_id" in query:
                try:
                    project_id = int(query["project_id"][0])
                except ValueError:
                    raise _bad("project_id: A valid integer is required.") from None
                tasks = [t for t in tasks if t.project is not None
                         and t.project.id == project_id]
            tasks.sort(key=lambda t: -t.id)
            return self._page(query, [self.app.task_json(t) for t in tasks], "/api/tasks",
                              "PaginatedTaskReadList")
