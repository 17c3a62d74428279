"""A CVAT task or job as a frame source: what it is, its labels, and its frames as BGR arrays.

Frames come chunk by chunk (``GET /api/tasks/{id}/data?type=chunk&quality=original``), the
way CVAT serves media efficiently: one request per ``data_chunk_size`` frames, zip chunks
(``imageset``) decoded image by image, video chunks (``video``, mp4) decoded with OpenCV.
The next chunk downloads while the current one is being processed. A chunk that cannot be
decoded, or decodes to the wrong number or size of frames, is replaced by one request per
frame (``type=frame``), so a surprising chunk format costs speed, never correctness.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from autotrack.cvat.task.connection import (
    DATA_TIMEOUT,
    CvatRequestError,
    CvatTaskError,
    Server,
)
from autotrack.cvat.task.labels import TaskLabel
from autotrack.errors import InputError
from autotrack.video import VideoInfo

CHUNK_TYPES = ("imageset", "video")
_LABEL_PAGE_SIZE = 500
_MAX_LABEL_PAGES = 200  # 100k labels: a bound on the paging loop, far above real tasks


@dataclass(frozen=True)
class Target:
    """A task or one of its jobs: where annotations go and which frames it covers."""

    kind: str  # "task" or "job"
    id: int
    task_id: int
    name: str
    mode: str  # "interpolation" (video) or "annotation" (images)
    dimension: str  # "2d" or "3d"
    job_type: str | None  # a job's type ("annotation", "ground_truth", ...); None for tasks
    task_size: int  # frames in the task
    first_frame: int  # frames this target covers, inclusive, in task frame numbers
    last_frame: int
    chunk_size: int | None
    chunk_type: str | None  # the original-quality chunk type: "imageset" or "video"
    width: int
    height: int
    deleted_frames: frozenset[int]
    frame_sizes_differ: bool

    def __str__(self) -> str:
        if self.kind == "job":
            return (f"job {self.id} (frames {self.first_frame}-{self.last_frame} of task "
                    f"{self.task_id})")
        return f"task {self.id} {self.name!r}"


def _value(model, name: str, default=None):  # noqa: ANN001, ANN202 (cvat-sdk model access)
    try:
        value = model[name]
    except (KeyError, AttributeError, TypeError):
        return default
    return default if value is None else value


def load_target(server: Server, task_id: int | None = None, job_id: int | None = None) -> Target:
    """Read a task (or a job and its task) and the task's data meta."""
    if (task_id is None) == (job_id is None):
        raise ValueError("give exactly one of task_id and job_id")
    api = server.api
    job = None
    if job_id is not None:
        job, _ = server.call(f"read job {job_id}", api.jobs_api.retrieve, job_id)
        task_id = int(job.task_id)
    task, _ = server.call(f"read task {task_id}", api.tasks_api.retrieve, task_id)
    size = int(_value(task, "size", 0))
    if not size or _value(task, "data") is None:
        raise CvatTaskError(f"task {task_id} has no data (no video or images uploaded yet)")
    meta, _ = server.call(f"read the data of task {task_id}", api.tasks_api.retrieve_data_meta,
                          task_id)
    frames = list(_value(meta, "frames", []) or [])
    sizes = {(int(_value(f, "width", 0)), int(_value(f, "height", 0))) for f in frames}
    first = frames[0] if frames else None
    width = int(_value(first, "width", 0)) if first is not None else 0
    height = int(_value(first, "height", 0)) if first is not None else 0
    kind, target_id, first_frame, last_frame, job_type = "task", task_id, 0, size - 1, None
    if job is not None:
        kind, target_id = "job", int(job.id)
        first_frame, last_frame = int(job.start_frame), int(job.stop_frame)
        job_type = str(_value(job, "type", "annotation"))
    return Target(
        kind=kind, id=int(target_id), task_id=int(task_id), name=str(_value(task, "name", "")),
        mode=str(_value(task, "mode", "")), dimension=str(_value(task, "dimension", "2d")),
        job_type=job_type, task_size=size, first_frame=first_frame, last_frame=last_frame,
        chunk_size=_value(task, "data_chunk_size"),
        chunk_type=_value(task, "data_original_chunk_type"),
        width=width, height=height,
        deleted_frames=frozenset(int(f) for f in _value(meta, "deleted_frames", []) or []),
        frame_sizes_differ=len(sizes) > 1,
    )


def check_trackable(target: Target, *, image_sequence: bool = False) -> None:
    """Refuse targets whose frames are not one 2D video (tracks would join unrelated images)."""
    where = f"task {target.task_id}"
    if target.dimension.lower() != "2d":
        raise CvatTaskError(f"{where} is a {target.dimension.upper()} task; tracks of boxes need "
                            "a 2D video task")
    if target.job_type not in (None, "annotation"):
        raise CvatTaskError(f"job {target.id} is a {target.job_type!r} job; upload to an "
                            "annotation job or to the task")
    if target.mode != "interpolation":
        if not image_sequence:
            raise CvatTaskError(
                f"{where} is not a video task (mode {target.mode!r}): its images need not be "
                "frames of one sequence, so tracks could join unrelated images; pass "
                "--image-sequence if they are consecutive frames of one video")
        if target.frame_sizes_differ:
            raise CvatTaskError(f"{where}: its images differ in size, so they are not frames of "
                                "one video")
    if target.width <= 0 or target.height <= 0:
        raise CvatTaskError(f"{where}: the server reports no frame size")


def select_frames(target: Target, start: int | None, stop: int | None) -> list[int]:
    """Task frame numbers to process: ``[start, stop]`` inside the target, deleted ones left out."""
    lo = target.first_frame if start is None else start
    hi = target.last_frame if stop is None else stop
    if lo < target.first_frame or hi > target.last_frame:
        raise InputError(f"--start/--stop {lo}-{hi} reach outside {target}, which has frames "
                         f"{target.first_frame}-{target.last_frame}")
    if lo > hi:
        raise InputError(f"--start {lo} is after --stop {hi}")
    frames = [f for f in range(lo, hi + 1) if f not in target.deleted_frames]
    if not frames:
        raise InputError(f"frames {lo}-{hi} of {target} are all deleted")
    return frames


def load_labels(server: Server, target: Target | None = None, *,
                project_id: int | None = None) -> list[TaskLabel]:
    """The target's top-level labels (a project's labels for a task in a project), or a
    project's (``project_id``)."""
    if project_id is not None:
        scope, what = {"project_id": project_id}, f"project {project_id}"
    elif target is not None:
        scope = {"job_id": target.id} if target.kind == "job" else {"task_id": target.task_id}
        what = str(target)
    else:
        raise ValueError("give a target or a project_id")
    labels: list[TaskLabel] = []
    for item in server.pages(f"read the labels of {what}", server.api.labels_api.list,
                             page_size=_LABEL_PAGE_SIZE, max_pages=_MAX_LABEL_PAGES, **scope):
        if _value(item, "parent_id") is not None or _value(item, "has_parent", False):
            continue  # a skeleton's point: not a label of its own
        specs = _value(item, "attributes", []) or []
        defaults = {int(a["id"]): str(_value(a, "default_value", ""))
                    for a in specs if _value(a, "id") is not None}
        labels.append(TaskLabel(int(item.id), str(item.name),
                                str(_value(item, "type", "any") or "any"), defaults))
    return labels


def _decode_image(data: bytes) -> np.ndarray | None:
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.ndim == 3 else None


def _decode_imageset(data: bytes, count: int) -> list[np.ndarray | None] | None:
    """A zip chunk's images in archive order (how CVAT orders frames in it); None if unusable."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != count:
            return None
        return [_decode_image(archive.read(m)) for m in members]
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError):
        return None


def _decode_video(data: bytes, count: int) -> list[np.ndarray | None] | None:
    """A video chunk's frames; None unless it decodes to exactly ``count`` frames."""
    handle, path = tempfile.mkstemp(suffix=".mp4", prefix="autotrack-chunk-")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        capture = cv2.VideoCapture(path)
        frames: list[np.ndarray | None] = []
        try:
            if not capture.isOpened():
                return None
            while len(frames) <= count:  # one past: a longer chunk is as wrong as a shorter
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)
        finally:
            capture.release()
        return frames if len(frames) == count else None
    finally:
        os.unlink(path)


class TaskFrames:
    """Iterates ``(task frame number, HxWx3 uint8 BGR frame)`` over chosen frames of a task.

    Has the ``info`` that :func:`autotrack.pipeline.track_video` reads from a frame source.
    ``fallback_frames`` counts frames that had to be fetched one by one.
    """

    def __init__(self, server: Server, target: Target, frames: Sequence[int], *,
                 fps: float = 30.0, warn: Callable[[str], None] | None = None,
                 use_chunks: bool = True) -> None:
        self.server = server
        self.target = target
        self.frames = sorted(set(int(f) for f in frames))
        self.info = VideoInfo(len(self.frames), target.width, target.height, fps)
        self.fallback_frames = 0
        self._warn = warn
        self._warned = False
        self._use_chunks = (use_chunks and bool(target.chunk_size)
                            and target.chunk_type in CHUNK_TYPES)

    def __len__(self) -> int:
        return len(self.frames)

    def _download(self, kind: str, number: int) -> bytes:
        """One chunk or frame of the task's data, at original quality."""
        api = self.server.api.tasks_api
        _, response = self.server.call(
            f"download {kind} {number} of task {self.target.task_id}", api.retrieve_data,
            self.target.task_id, type=kind, number=number, quality="original",
            _parse_response=False, timeout=DATA_TIMEOUT)
        try:
            return response.data
        finally:
            response.release_conn()

    def _chunk_bytes(self, chunk: int) -> bytes:
        return self._download("chunk", chunk)

    def _frame(self, frame: int) -> np.ndarray:
        image = _decode_image(self._download("frame", frame))
        if image is None:
            raise CvatRequestError(f"frame {frame} of task {self.target.task_id}: the server "
                                   "sent something that is not an image")
        return image

    def _decode_chunk(self, chunk: int, data: bytes) -> list[np.ndarray | None] | None:
        size = int(self.target.chunk_size or 0)
        count = min(size, self.target.task_size - chunk * size)
        if self.target.chunk_type == "imageset":
            images = _decode_imageset(data, count)
        else:
            images = _decode_video(data, count)
        if images is None:
            return None
        shape = (self.target.height, self.target.width)
        return [img if img is not None and img.shape[:2] == shape else None for img in images]

    def _note_fallback(self, chunk: int) -> None:
        if self._warn is not None and not self._warned:
            self._warned = True
            self._warn(f"chunk {chunk} of task {self.target.task_id} ({self.target.chunk_type}) "
                       "could not be used as is; fetching its frames one by one")

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if not self._use_chunks:
            for frame in self.frames:
                yield frame, self._frame(frame)
            return
        size = int(self.target.chunk_size)
        groups: dict[int, list[int]] = {}
        for frame in self.frames:
            groups.setdefault(frame // size, []).append(frame)
        chunks = sorted(groups)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvat-chunk") as pool:
            pending = pool.submit(self._chunk_bytes, chunks[0])
            for i, chunk in enumerate(chunks):
                data = pending.result()
                if i + 1 < len(chunks):
                    pending = pool.submit(self._chunk_bytes, chunks[i + 1])
                images = self._decode_chunk(chunk, data)
                del data
                for frame in groups[chunk]:
                    image = None if images is None else images[frame - chunk * size]
                    if image is None:
                        self._note_fallback(chunk)
                        self.fallback_frames += 1
                        image = self._frame(frame)
                    yield frame, image
