"""A CVAT-compatible REST server for tests: the endpoints ``tools/annotate_task.py`` uses.

Runs ``http.server.ThreadingHTTPServer`` in a thread on 127.0.0.1 and serves real frames
(JPEG-encoded once, cached). It is strict where it can be:

* every JSON request body is deserialized into the cvat-sdk model the OpenAPI schema names
  for that endpoint (``LabeledDataRequest``, ``PatchedLabeledDataRequest``,
  ``LoginSerializerExRequest``) with full type checking; on top of that, keys the schema
  does not define are refused (cvat-sdk would let them through). A failure is a 400 whose
  body carries the validation message;
* CVAT's own checks on annotations are applied (a label must belong to the task, an
  attribute to the label, ``source`` one of CVAT's choices), plus stricter ones this tool
  must pass anyway (frames inside the task, four points per rectangle, a track's frame is
  its first keyframe's, no ids on create);
* every JSON response is checked against the cvat-sdk read model before it is sent, so the
  server cannot drift from what the client parses;
* authentication as CVAT does it: login sets ``sessionid`` and ``csrftoken`` cookies (a wrong
  password is a 400), unsafe requests need the ``X-CSRFToken`` header, tokens go in
  ``Authorization: Bearer``; no credentials or a bad token is a 401, another user's task 403.

Every request is recorded (method, path, query, parsed body, status, route); an endpoint
not implemented here answers 404 and is recorded with ``route=None``.

Like CVAT (read in its ``dataset_manager/task.py``, not checked against a live server): a
PATCH ``create`` answers with just the created objects and their new ids; PUT replaces
everything and keeps the ids it is given (CVAT builds the rows from the request, id
included); GET fills in every attribute a label defines, with defaults.

Simplifications, on purpose: annotations are stored per task, not per job, so a track is
never split at job boundaries; a job's annotations are the task's objects that start inside
the job's frames. Skeletons (``elements``), exports and organizations are not modelled.
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
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

SERVER_VERSION = "2.80.0"  # cvat-sdk 2.80 supports servers 2.80 and 2.81
SOURCES = ("manual", "semi-auto", "auto", "file", "consensus")  # CVAT's SourceType
MAX_BODY = 64 * 1024 * 1024
DATE = "2026-11-01T12:00:00.000000Z"


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

@dataclass
class FakeJob:
    id: int
    task_id: int
    start: int
    stop: int
    type: str = "annotation"


@dataclass
class FakeTask:
    id: int
    name: str
    size: int
    labels: list[dict[str, Any]]
    owner: str
    mode: str = "interpolation"
    dimension: str = "2d"
    chunk_size: int = 36
    chunk_type: str = "imageset"  # original chunks: "imageset" (zip) or "video" (mp4)
    frame_offset: int = 0  # task frame i is video frame frame_offset + i
    users: set[str] = field(default_factory=set)  # others who may see and edit it
    deleted_frames: list[int] = field(default_factory=list)
    broken_chunks: set[int] = field(default_factory=set)  # chunks served as garbage
    jobs: list[FakeJob] = field(default_factory=list)
    annotations: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"tags": [], "shapes": [], "tracks": [], "intervals": []})


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


# --- the server ---------------------------------------------------------------------------

class CvatTestServer:
    """The server: users, tasks, annotations, recorded requests. Use as a context manager."""

    def __init__(self, frames: FrameStore, *, users: dict[str, str] | None = None,
                 tokens: dict[str, str] | None = None) -> None:
        self.frames = frames
        self.users = users if users is not None else {"alice": "alice-pass", "bob": "bob-pass"}
        self.tokens = tokens if tokens is not None else {"alice-token": "alice"}
        self.sessions: dict[str, tuple[str, str]] = {}  # sessionid -> (user, csrftoken)
        self.tasks: dict[int, FakeTask] = {}
        self.jobs: dict[int, FakeJob] = {}
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # tracebacks of 500s: bugs in this server
        self.lock = threading.RLock()
        self._task_ids = itertools.count(1)
        self._job_ids = itertools.count(101)
        self._label_ids = itertools.count(1)
        self._spec_ids = itertools.count(1)
        self._object_ids = {kind: itertools.count(1) for kind in
                            ("tags", "shapes", "tracks", "intervals", "tracked_shapes")}
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
    def add_task(self, name: str, labels: list[str | dict[str, Any]], *, size: int | None = None,
                 owner: str = "alice", jobs: list[tuple[int, int]] | None = None,
                 **options: Any) -> FakeTask:
        """A task over frames of the store. Labels are names or dicts (name, type, attributes:
        [{name, mutable, default_value, values}])."""
        with self.lock:
            task_id = next(self._task_ids)
            size = len(self.frames) - options.get("frame_offset", 0) if size is None else size
            task = FakeTask(task_id, name, size, [self._label(task_id, x) for x in labels],
                            owner, **options)
            for start, stop in jobs or [(0, size - 1)]:
                job = FakeJob(next(self._job_ids), task_id, start, stop)
                task.jobs.append(job)
                self.jobs[job.id] = job
            self.tasks[task_id] = task
            return task

    def _label(self, task_id: int, spec: str | dict[str, Any]) -> dict[str, Any]:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        attributes = [{
            "id": next(self._spec_ids), "name": a["name"], "mutable": bool(a.get("mutable")),
            "input_type": a.get("input_type", "select"),
            "default_value": a.get("default_value", a.get("values", [""])[0]),
            "values": list(a.get("values", [])),
        } for a in spec.get("attributes", [])]
        return {"id": next(self._label_ids), "name": spec["name"], "color": "#33ddff",
                "type": spec.get("type", "any"), "attributes": attributes, "sublabels": [],
                "has_parent": False, "task_id": task_id, "project_id": None, "parent_id": None,
                "svg": ""}

    def label_id(self, task: FakeTask, name: str) -> int:
        return next(label["id"] for label in task.labels if label["name"] == name)

    def seed(self, task: FakeTask, data: dict[str, list[dict[str, Any]]]) -> None:
        """Put annotations on a task as if a person had made them (validated like a PUT)."""
        with self.lock:
            validate_request(data, "LabeledDataRequest")
            self._check_semantics(task, data, allow_ids=True)
            for key in ("tags", "shapes", "tracks", "intervals"):
                task.annotations[key].extend(self._stored(key, item, keep_id=True)
                                             for item in data.get(key, []))

    def stored(self, task: FakeTask) -> dict[str, Any]:
        """The annotations as a GET of the task returns them now."""
        with self.lock:
            return self._read(task, None)

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

    # -- annotations --
    def _new_id(self, kind: str) -> int:
        return next(self._object_ids[kind])

    def _bump(self, kind: str, used: int) -> None:
        counter = self._object_ids[kind]
        current = next(counter)
        self._object_ids[kind] = itertools.count(max(current, used + 1))

    def _stored(self, key: str, item: dict[str, Any], *, keep_id: bool) -> dict[str, Any]:
        """A request object in the form CVAT stores and returns it, with an id."""
        item = copy.deepcopy(item)
        kind = key
        if keep_id and item.get("id") is not None:
            self._bump(kind, int(item["id"]))
        else:
            item["id"] = self._new_id(kind)
        common = {"group": item.get("group", 0),
                  "source": item.get("source", "manual"),
                  "attributes": item.get("attributes", [])}
        if key == "tags":
            return {"id": item["id"], "frame": item["frame"], "label_id": item["label_id"],
                    **common}
        if key == "intervals":
            return {"id": item["id"], "label_id": item["label_id"], "start": item["start"],
                    "stop": item.get("stop"), **common,
                    **({"score": item["score"]} if "score" in item else {})}
        if key == "shapes":
            out = {"id": item["id"], "type": item["type"], "frame": item["frame"],
                   "label_id": item["label_id"], **common, **self._geometry(item),
                   "elements": []}
            if "score" in item:
                out["score"] = item["score"]
            return out
        shapes = []
        for shape in item["shapes"]:
            if keep_id and shape.get("id") is not None:
                self._bump("tracked_shapes", int(shape["id"]))
                shape_id = shape["id"]
            else:
                shape_id = self._new_id("tracked_shapes")
            shapes.append({"id": shape_id, "type": shape["type"], "frame": shape["frame"],
                           **self._geometry(shape), "attributes": shape.get("attributes", [])})
        return {"id": item["id"], "frame": item["frame"], "label_id": item["label_id"],
                **common, "shapes": shapes, "elements": []}

    @staticmethod
    def _geometry(item: dict[str, Any]) -> dict[str, Any]:
        return {"occluded": bool(item.get("occluded", False)),
                "outside": bool(item.get("outside", False)),
                "z_order": int(item.get("z_order", 0)),
                "rotation": float(item.get("rotation", 0.0)),
                "points": [float(p) for p in item.get("points", [])]}

    def _check_semantics(self, task: FakeTask, data: dict[str, Any], *, allow_ids: bool,
                         job: FakeJob | None = None) -> None:
        """CVAT's checks on annotations, and stricter ones (see the module docstring)."""
        labels = {label["id"]: label for label in task.labels}
        lo, hi = (job.start, job.stop) if job else (0, task.size - 1)

        def check_common(item: dict[str, Any], where: str) -> dict[str, Any]:
            label = labels.get(item["label_id"])
            if label is None:
                raise _bad(f"label_id `{item['label_id']}` is invalid")
            if "source" in item and item["source"] not in SOURCES:
                raise _bad(f"{where}: source: \"{item['source']}\" is not a valid choice.")
            if not allow_ids and item.get("id") is not None:
                raise _bad(f"{where}: a new object must not carry an id")
            if item.get("elements"):
                raise _bad(f"{where}: skeleton elements are not modelled by the test server")
            specs = {a["id"] for a in label["attributes"]}
            for attr in item.get("attributes", []):
                if attr["spec_id"] not in specs:
                    raise _bad(f"spec_id `{attr['spec_id']}` is invalid")
            return label

        def check_frame(frame: int, where: str) -> None:
            if not lo <= frame <= hi:
                raise _bad(f"{where}: frame {frame} is outside frames {lo}-{hi}")

        def check_points(item: dict[str, Any], where: str) -> None:
            if item["type"] == "rectangle" and len(item.get("points", [])) != 4:
                raise _bad(f"{where}: a rectangle needs 4 points, got "
                           f"{len(item.get('points', []))}")

        for i, tag in enumerate(data.get("tags", [])):
            check_common(tag, f"tags[{i}]")
            check_frame(tag["frame"], f"tags[{i}]")
        for i, shape in enumerate(data.get("shapes", [])):
            check_common(shape, f"shapes[{i}]")
            check_frame(shape["frame"], f"shapes[{i}]")
            check_points(shape, f"shapes[{i}]")
        for i, track in enumerate(data.get("tracks", [])):
            where = f"tracks[{i}]"
            label = check_common(track, where)
            shapes = track["shapes"]
            if not shapes:
                raise _bad(f"{where}: a track needs at least one shape")
            frames = [s["frame"] for s in shapes]
            if frames != sorted(set(frames)):
                raise _bad(f"{where}: shape frames are not strictly increasing: {frames}")
            if track["frame"] != frames[0]:
                raise _bad(f"{where}: track frame {track['frame']} is not its first shape's "
                           f"{frames[0]}")
            specs = {a["id"] for a in label["attributes"]}
            for j, shape in enumerate(shapes):
                check_frame(shape["frame"], f"{where}.shapes[{j}]")
                check_points(shape, f"{where}.shapes[{j}]")
                if not allow_ids and shape.get("id") is not None:
                    raise _bad(f"{where}.shapes[{j}]: a new shape must not carry an id")
                for attr in shape.get("attributes", []):
                    if attr["spec_id"] not in specs:
                        raise _bad(f"spec_id `{attr['spec_id']}` is invalid")

    def _read(self, task: FakeTask, job: FakeJob | None) -> dict[str, Any]:
        """GET: stored objects with every label attribute filled in, as CVAT does."""
        labels = {label["id"]: label for label in task.labels}

        def inside(item: dict[str, Any], key: str) -> bool:
            if job is None:
                return True
            frame = item["start"] if key == "intervals" else item["frame"]
            return job.start <= frame <= job.stop

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
        for key in ("tags", "shapes", "tracks", "intervals"):
            items = []
            for item in task.annotations[key]:
                if not inside(item, key):
                    continue
                item = copy.deepcopy(item)
                specs = labels[item["label_id"]]["attributes"]
                if key == "tracks":
                    item["attributes"] = extend(item["attributes"],
                                                [s for s in specs if not s["mutable"]])
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

    def _belongs(self, task: FakeTask, job: FakeJob | None, key: str,
                 item: dict[str, Any]) -> bool:
        if job is None:
            return True
        frame = item["start"] if key == "intervals" else item["frame"]
        return job.start <= frame <= job.stop

    def put_annotations(self, task: FakeTask, job: FakeJob | None,
                        data: dict[str, Any]) -> dict[str, Any]:
        self._check_semantics(task, data, allow_ids=True, job=job)
        created = {}
        for key in ("tags", "shapes", "tracks", "intervals"):
            kept = [x for x in task.annotations[key] if not self._belongs(task, job, key, x)]
            given = [self._stored(key, x, keep_id=True) for x in data.get(key, [])]
            ids = [x["id"] for x in kept + given]
            if len(ids) != len(set(ids)):
                raise _bad(f"{key}: duplicate ids")
            task.annotations[key] = kept + given
            created[key] = given
        return {"version": 0, **created}

    def patch_annotations(self, task: FakeTask, job: FakeJob | None, action: str,
                          data: dict[str, Any]) -> dict[str, Any]:
        if action == "create":
            self._check_semantics(task, data, allow_ids=False, job=job)
            created = {}
            for key in ("tags", "shapes", "tracks", "intervals"):
                new = [self._stored(key, x, keep_id=False) for x in data.get(key, [])]
                task.annotations[key].extend(new)
                created[key] = copy.deepcopy(new)
            return {"version": 0, **created}
        if action in ("update", "delete"):
            self._check_semantics(task, data, allow_ids=True, job=job)
            for key in ("tags", "shapes", "tracks", "intervals"):
                present = {x["id"]: x for x in task.annotations[key]
                           if self._belongs(task, job, key, x)}
                for item in data.get(key, []):
                    if item.get("id") not in present:
                        raise _bad(f"{key}: no object with id {item.get('id')} to {action}")
            result: dict[str, Any] = {"version": 0}
            for key in ("tags", "shapes", "tracks", "intervals"):
                ids = {x["id"] for x in data.get(key, [])}
                task.annotations[key] = [x for x in task.annotations[key] if x["id"] not in ids]
                if action == "update":
                    updated = [self._stored(key, x, keep_id=True) for x in data.get(key, [])]
                    task.annotations[key].extend(updated)
                    result[key] = copy.deepcopy(updated)
                else:
                    result[key] = copy.deepcopy(data.get(key, []))
            return result
        raise _bad(f"Please specify a correct 'action' for the request: {action!r}")

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
            "project_id": None, "project_name": None,
            "owner": self._user_json(task.owner), "bug_tracker": "",
            "created_date": DATE, "updated_date": DATE, "overlap": 0,
            "segment_size": max(j.stop - j.start + 1 for j in task.jobs),
            "status": "annotation", "data_chunk_size": task.chunk_size,
            "data_original_chunk_type": task.chunk_type,
            "data_compressed_chunk_type": task.chunk_type, "data_cloud_storage_id": None,
            "guide_id": None, "size": task.size, "image_quality": 70, "data": task.id,
            "dimension": task.dimension, "mode": task.mode, "media_type": "image",
            "subset": "", "organization": None, "organization_id": None,
            "assignee_updated_date": None, "validation_mode": None,
            "jobs": {"count": len(task.jobs), "completed": 0, "validation": 0,
                     "url": f"{self.url}/api/jobs?task_id={task.id}"},
            "labels": {"url": f"{self.url}/api/labels?task_id={task.id}"},
        }

    def job_json(self, job: FakeJob) -> dict[str, Any]:
        task = self.tasks[job.task_id]
        return {
            "url": f"{self.url}/api/jobs/{job.id}", "id": job.id, "task_id": task.id,
            "task_name": task.name, "project_id": None, "project_name": None,
            "guide_id": None, "dimension": task.dimension, "mode": task.mode,
            "media_type": "image", "bug_tracker": None, "status": "annotation",
            "stage": "annotation", "state": "new", "frame_count": job.stop - job.start + 1,
            "start_frame": job.start, "stop_frame": job.stop,
            "data_chunk_size": task.chunk_size, "data_compressed_chunk_type": task.chunk_type,
            "data_original_chunk_type": task.chunk_type, "created_date": DATE,
            "updated_date": DATE, "type": job.type, "organization": None,
            "assignee_updated_date": None, "parent_job_id": None, "replicas_count": 0,
            "issues": {"url": f"{self.url}/api/issues?job_id={job.id}", "count": 0},
            "labels": {"url": f"{self.url}/api/labels?job_id={job.id}"},
        }

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
        ("GET", r"/api/labels", "labels"),
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
        if user != task.owner and user not in task.users:
            raise ServerError(403, {"detail": "You do not have permission to perform this "
                                              "action."})
        return task

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

    def _task_annotations_get(self, params: dict, query: dict, body: Any,
                              user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        if set(query) - {"org", "org_id"}:
            raise _bad("exports (format/action/location) are not modelled by the test server")
        with self.app.lock:
            return self._json(self.app._read(task, None), "LabeledData")

    def _task_annotations_put(self, params: dict, query: dict, body: Any,
                              user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        validate_request(body, "LabeledDataRequest")
        with self.app.lock:
            return self._json(self.app.put_annotations(task, None, body), "LabeledData")

    def _task_annotations_patch(self, params: dict, query: dict, body: Any,
                                user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        validate_request(body, "PatchedLabeledDataRequest")
        action = query.get("action", [""])[0]
        with self.app.lock:
            return self._json(self.app.patch_annotations(task, None, action, body), "LabeledData")

    def _task_annotations_delete(self, params: dict, query: dict, body: Any,
                                 user: str | None) -> tuple:
        task = self._find_task(params["id"], user)
        with self.app.lock:
            for key in task.annotations:
                task.annotations[key] = []
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
        if set(query) - {"org", "org_id"}:
            raise _bad("exports (format/action/location) are not modelled by the test server")
        with self.app.lock:
            return self._json(self.app._read(task, job), "LabeledData")

    def _job_annotations_put(self, params: dict, query: dict, body: Any,
                             user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        validate_request(body, "LabeledDataRequest")
        with self.app.lock:
            return self._json(self.app.put_annotations(task, job, body), "LabeledData")

    def _job_annotations_patch(self, params: dict, query: dict, body: Any,
                               user: str | None) -> tuple:
        task, job = self._find_job(params["id"], user)
        validate_request(body, "PatchedLabeledDataRequest")
        action = query.get("action", [""])[0]
        with self.app.lock:
            return self._json(self.app.patch_annotations(task, job, action, body), "LabeledData")

    def _labels(self, params: dict, query: dict, body: Any, user: str | None) -> tuple:
        if "task_id" in query:
            task = self._find_task(query["task_id"][0], user)
        elif "job_id" in query:
            task, _ = self._find_job(query["job_id"][0], user)
        else:
            raise _bad("the test server lists labels by task_id or job_id only")
        try:
            page = int(query.get("page", ["1"])[0])
            size = int(query.get("page_size", ["10"])[0])
        except ValueError:
            raise ServerError(404, {"detail": "Invalid page."}) from None
        if page < 1 or size < 1:
            raise ServerError(404, {"detail": "Invalid page."})
        labels = task.labels[(page - 1) * size: page * size]
        more = page * size < len(task.labels)
        kept = "&".join(f"{k}={v[0]}" for k, v in query.items() if k != "page")
        base = f"{self.app.url}/api/labels?{kept}"
        return self._json({"count": len(task.labels), "results": labels,
                           "next": f"{base}&page={page + 1}" if more else None,
                           "previous": f"{base}&page={page - 1}" if page > 1 else None},
                          "PaginatedLabelList")

