"""Cut tracks and shapes into a task's jobs the way CVAT does, so a job-by-job write stores
exactly what a task-level write would, and a task-level read joins the pieces again.

Follows cvat-ai/cvat ``cvat/apps/dataset_manager/annotation.py``, ``AnnotationIR.slice``:
a shape or tag goes to every job holding its frame (two where jobs overlap); a track goes to
every job on whose frames it is visible (``_is_track_inside``), cut by ``_slice_track``: its
keyframes inside the job (leading outside ones dropped), plus the interpolated shape on the
job's first frame when the track is already visible there, plus the interpolated shape on the
job's last frame when the track goes on after it and moves. A piece ends visible, as CVAT's
do: a task-level read closes or joins it (``ObjectManager.merge``). CVAT's own slice appends a
closing outside keyframe a second time in one case (a malformed track); this one does not.

Interpolation is CVAT's (``TrackManager.get_interpolated_shapes``, in
:func:`autotrack.merge.cvat_tracks.shape_at`): rectangles and ellipses move linearly,
polygons point by point when both keyframes have as many points, and are held otherwise
(CVAT then matches the two outlines; a polygon track from :mod:`autotrack.cvat.task.segment`
gets a keyframe where its outline changes).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autotrack.cvat.task.jobs import Job
from autotrack.merge.cvat_tracks import frame_of as _frame
from autotrack.merge.cvat_tracks import ordered_shapes as _ordered
from autotrack.merge.cvat_tracks import shape_at, track_visible_in


def slice_track(track: Mapping[str, Any], start: int, stop: int) -> dict[str, Any] | None:
    """The piece of ``track`` that job [start, stop] stores (None when it shows nowhere there).

    Ids are left out: the piece is a new object of that job.
    """
    if not track_visible_in(track, start, stop):
        return None
    shapes = _ordered(track)
    piece = [{k: copy.deepcopy(v) for k, v in s.items() if k != "id"}
             for s in shapes if start <= _frame(s) <= stop]
    opening = shape_at(track, start) if _frame(shapes[0]) < start else None
    if opening is not None and (not piece or _frame(piece[0]) > start):
        piece.insert(0, opening)
    while piece and piece[0].get("outside"):
        piece.pop(0)
    closing = shape_at(track, stop) if _frame(shapes[-1]) > stop else None
    if closing is not None and _frame(piece[-1]) < stop and \
            closing["points"] != piece[-1]["points"]:
        piece.append(closing)
    out = {k: copy.deepcopy(v) for k, v in track.items() if k not in ("id", "shapes")}
    out["shapes"] = piece
    out["frame"] = _frame(piece[0])
    return out


def split_for_jobs(data: Mapping[str, Any], jobs: Sequence[Job]) -> dict[int, dict[str, Any]]:
    """``{job id: {"tags", "shapes", "tracks"}}``: what each job stores of ``data``."""
    out: dict[int, dict[str, Any]] = {}
    for job in jobs:
        def here(items: Iterable[Mapping[str, Any]], job: Job = job) -> list[dict[str, Any]]:
            return [copy.deepcopy(dict(x)) for x in items if job.start <= _frame(x) <= job.stop]

        tracks = [slice_track(t, job.start, job.stop) for t in data.get("tracks") or []]
        out[job.id] = {"tags": here(data.get("tags") or []),
                       "shapes": here(data.get("shapes") or []),
                       "tracks": [t for t in tracks if t is not None]}
    return out
