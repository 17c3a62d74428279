"""What merging tracks changes in each job of a task, worked out before anything is written.

A task-level read (what the UI's track ids and every export show) joins the pieces that CVAT
stores per job: ``ObjectManager.merge`` in cvat/apps/dataset_manager/annotation.py links a
job's track to the previous job's across their overlapping frames and keeps the earlier
piece's id, so the later pieces' ids never show. Edits must still be made job by job (a
task-level write is cut per job and every job rewritten), so for each track to merge this
finds its pieces in every job: the piece whose id it has, and the pieces whose keyframes past
the previous job's last frame are its keyframes (CVAT copies them unchanged into the task-level
track). The merged track is then cut per job as CVAT cuts a task-level write
(:func:`autotrack.cvat.task.slicing.slice_track`): one new piece per job, the old pieces deleted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autotrack.cvat.task.jobs import Job
from autotrack.cvat.task.slicing import slice_track
from autotrack.errors import InputError
from autotrack.merge.cvat_tracks import JoinReport, frame_of, join_tracks, shape_at

POINT_TOLERANCE = 0.5  # pixels: a job piece's keyframe and the task-level track's agree


@dataclass
class JobChange:
    """One job's part of a merge: the piece to create, the pieces to delete (as read)."""

    job: Job
    create: dict[str, Any] | None
    delete: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MergePlan:
    """One merge: the task-level tracks joined, the result, and its changes per job."""

    track_ids: tuple[int, ...]
    merged: dict[str, Any]
    report: JoinReport
    changes: tuple[JobChange, ...]


def _agrees(piece_shape: Mapping[str, Any], track: Mapping[str, Any]) -> bool:
    shown = shape_at(track, frame_of(piece_shape))
    if piece_shape.get("outside"):
        return shown is None
    if shown is None or len(shown.get("points") or []) != len(piece_shape.get("points") or []):
        return False
    return all(abs(float(a) - float(b)) <= POINT_TOLERANCE
               for a, b in zip(shown["points"], piece_shape["points"]))


def owned_pieces(track: Mapping[str, Any], job: Job, job_tracks: Sequence[Mapping[str, Any]],
                 previous_stop: int) -> list[dict[str, Any]]:
    """The tracks of ``job`` (as a job-level read returns them) that are pieces of the
    task-level ``track``: its own id, or the same label and every keyframe past
    ``previous_stop`` (the previous job's last frame; CVAT keeps the earlier job's shapes on
    the frames two jobs share) one that ``track`` shows there (every keyframe, for a piece
    that lies in the shared frames)."""
    owned = []
    for piece in job_tracks:
        if piece.get("id") == track.get("id"):
            owned.append(dict(piece))
            continue
        if piece.get("label_id") != track.get("label_id"):
            continue
        shapes = [s for s in piece.get("shapes") or [] if frame_of(s) > previous_stop] \
            or list(piece.get("shapes") or [])  # a piece that lies in the shared frames
        if shapes and all(_agrees(s, track) for s in shapes):
            owned.append(dict(piece))
    return owned


def plan_merge(task_tracks: Mapping[int, Mapping[str, Any]], track_ids: Sequence[int],
               jobs: Sequence[Job], job_reads: Mapping[int, Mapping[str, Any]], *,
               bridge: bool = False, trim: bool = False) -> MergePlan:
    """Join the task-level tracks ``track_ids`` and plan the change of every job they touch;
    :class:`InputError` for an id the task does not have, a piece that cannot be found in its
    jobs, or pieces that cannot be joined."""
    missing = [i for i in track_ids if i not in task_tracks]
    if missing:
        known = ", ".join(map(str, sorted(task_tracks)[:20])) or "none"
        raise InputError(f"track {', '.join(map(str, missing))} is not a track of this task "
                         f"(its tracks: {known}{', ...' if len(task_tracks) > 20 else ''})")
    tracks = [task_tracks[i] for i in track_ids]
    merged, report = join_tracks(tracks, bridge=bridge, trim=trim)
    ordered = sorted(jobs, key=lambda j: (j.start, j.id))
    changes: list[JobChange] = []
    found: dict[int, int] = {i: 0 for i in track_ids}
    for index, job in enumerate(ordered):
        previous_stop = ordered[index - 1].stop if index else -1
        job_tracks = job_reads[job.id].get("tracks") or []
        delete: dict[int, dict[str, Any]] = {}
        for track in tracks:
            for piece in owned_pieces(track, job, job_tracks, previous_stop):
                delete[int(piece["id"])] = piece
                found[int(track["id"])] += 1
        create = slice_track(merged, job.start, job.stop)
        if delete or create is not None:
            changes.append(JobChange(job, create, list(delete.values())))
    lost = [i for i, n in found.items() if not n]
    if lost:
        raise InputError(f"track {', '.join(map(str, lost))}: no job holds a piece of it as the "
                         "task shows it (was the task edited meanwhile?); nothing written")
    return MergePlan(tuple(track_ids), merged, report, tuple(changes))


def one_shape_per_frame(track: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``track`` with one keyframe per frame (the first): CVAT's own cut of a
    task-level write can store a closing outside keyframe twice, which it then refuses to
    read back once written again, so a piece is put back without the copy."""
    seen: set[int] = set()
    shapes = []
    for shape in sorted(track.get("shapes") or [], key=frame_of):
        if frame_of(shape) not in seen:
            seen.add(frame_of(shape))
            shapes.append(shape)
    return {**track, "shapes": shapes}


def track_digest(track: Mapping[str, Any]) -> str:
    """A digest of a task-level track's content (ids of its shapes left out), to tell whether
    a proposals file still describes the task."""
    content = {k: v for k, v in track.items() if k != "id"}
    content["shapes"] = [{k: v for k, v in s.items() if k != "id"}
                         for s in sorted(track.get("shapes") or [], key=frame_of)]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


__all__ = ["JobChange", "MergePlan", "one_shape_per_frame", "owned_pieces",
           "plan_merge", "track_digest"]
