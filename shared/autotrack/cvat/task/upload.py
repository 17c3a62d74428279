"""Write a run's tracks and shapes job by job, find this tool's own objects again, delete only
those, and read every job back.

CVAT stores every annotation with one job (:mod:`autotrack.cvat.task.jobs`), so everything
here is per job: the pieces of :func:`~autotrack.cvat.task.slicing.split_for_jobs` go up with
``PATCH /api/jobs/{id}/annotations?action=create`` in batches; after each batch the ids the
server gave them, with a fingerprint of what it stored, go into the manifest (see
:mod:`autotrack.cvat.task.backup`), so even an upload cut short leaves a manifest that knows
every object it created, in every job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autotrack.cvat.task.annotations import (
    CREATE,
    DELETE,
    as_track_request,
    canonical,
    fingerprint,
    get_annotations,
    patch_annotations,
)
from autotrack.cvat.task.backup import Manifest, utc_now
from autotrack.cvat.task.connection import Server
from autotrack.cvat.task.jobs import Job

# Keyframes (or shapes) per PATCH request: a few hundred kB of JSON, well inside a web
# server's body limit.
MAX_SHAPES_PER_REQUEST = 2000
OBJECT_KINDS = ("tracks", "shapes")


def object_span(item: Mapping[str, Any], last_frame: int) -> tuple[int, int]:
    """First and last frame where CVAT shows a track (or the frame of a shape).

    A track ends the frame before its closing outside keyframe; one whose last keyframe is
    visible stays visible to ``last_frame`` (its job's last frame).
    """
    if "shapes" not in item:
        frame = int(item["frame"])
        return frame, frame
    shapes = sorted(item.get("shapes") or [], key=lambda s: int(s["frame"]))
    if not shapes:
        frame = int(item["frame"])
        return frame, frame
    first, last = int(shapes[0]["frame"]), shapes[-1]
    end = int(last["frame"]) - 1 if last.get("outside") else max(last_frame, int(last["frame"]))
    return first, max(first, end)


@dataclass
class OwnObjects:
    """The manifest's objects as found in one job now."""

    ours: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {kind: [] for kind in OBJECT_KINDS})  # removable
    edited: list[int] = field(default_factory=list)  # ours once, changed since: kept
    out_of_range: list[int] = field(default_factory=list)  # outside the frames: kept
    crossing: list[int] = field(default_factory=list)  # partly outside the frames: kept

    def count(self) -> int:
        return sum(len(items) for items in self.ours.values())

    def add(self, other: OwnObjects) -> None:
        for kind in OBJECT_KINDS:
            self.ours[kind].extend(other.ours[kind])
        self.edited += other.edited
        self.out_of_range += other.out_of_range
        self.crossing += other.crossing


def find_own_objects(annotations: Mapping[str, Any], manifest: Manifest, job: Job,
                     attribute_defaults: Mapping[int, str],
                     frames: tuple[int, int]) -> OwnObjects:
    """Sort one job's objects listed in the manifest into removable and kept ones.

    Removable: id in the manifest (for this kind of object), ``source`` still ``auto``,
    content unchanged (same fingerprint) and shown only inside ``frames`` (first, last), the
    frames being recomputed. One reaching past them is kept whole: removing it would lose the
    part this run does not recompute. Anything else stays too.
    """
    found = OwnObjects()
    for kind in OBJECT_KINDS:
        entries = manifest.entries(kind)
        for item in annotations.get(kind) or []:
            item_id = item.get("id")
            if item_id is None or int(item_id) not in entries:
                continue
            entry = entries[int(item_id)]
            if (item.get("source") != "auto"
                    or fingerprint(item, attribute_defaults) != entry.get("fingerprint")):
                found.edited.append(int(item_id))
                continue
            first, last = object_span(item, job.stop)
            if last < frames[0] or first > frames[1]:
                found.out_of_range.append(int(item_id))
            elif first < frames[0] or last > frames[1]:
                found.crossing.append(int(item_id))
            else:
                found.ours[kind].append(item)
    return found


def _batches(items: Sequence[dict[str, Any]], max_shapes: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    shapes = 0
    for item in items:
        n = len(item.get("shapes") or [None])
        if batch and shapes + n > max_shapes:
            yield batch
            batch, shapes = [], 0
        batch.append(item)
        shapes += n
    if batch:
        yield batch


@dataclass
class JobWrite:
    """What a run did to one job."""

    job: Job
    created: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {kind: [] for kind in OBJECT_KINDS})  # as the server answered
    deleted: dict[str, list[int]] = field(
        default_factory=lambda: {kind: [] for kind in OBJECT_KINDS})
    unconfirmed: int = 0  # objects sent whose id the server did not report

    def created_count(self, kind: str) -> int:
        return len(self.created[kind])


def create_objects(server: Server, job: Job, piece: Mapping[str, Sequence[dict[str, Any]]],
                   manifest: Manifest, attribute_defaults: Mapping[int, str], result: JobWrite,
                   *, max_shapes: int = MAX_SHAPES_PER_REQUEST) -> None:
    """Add one job's tracks and shapes (JSON without ids); record every created id."""
    run = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    for kind in OBJECT_KINDS:
        for batch in _batches(list(piece.get(kind) or []), max_shapes):
            answer = patch_annotations(server, "job", job.id, CREATE, {kind: batch})
            returned = [x for x in (answer or {}).get(kind) or [] if x.get("id") is not None]
            for item in returned:
                first, last = object_span(item, job.stop)
                manifest.add(kind, int(item["id"]), fingerprint(item, attribute_defaults),
                             label_id=int(item["label_id"]), frames=[first, last],
                             created_at=run, job=job.id)
            if returned:
                manifest.save()
            result.unconfirmed += max(0, len(batch) - len(returned))
            result.created[kind].extend(returned)


def _delete_request(kind: str, item: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "tracks":
        return as_track_request(item)
    return {k: v for k, v in item.items() if k != "elements" or v}


def delete_objects(server: Server, job: Job, own: OwnObjects, manifest: Manifest,
                   result: JobWrite, *, max_shapes: int = MAX_SHAPES_PER_REQUEST) -> None:
    """Delete these (provably own) objects of one job by id, one kind per request: cvat-sdk's
    ``remove_annotations(ids=...)`` matches ids against every table, so an unrelated object
    of another kind with the same id would go too; drop them from the manifest."""
    for kind in OBJECT_KINDS:
        requests = [_delete_request(kind, item) for item in own.ours[kind]]
        for batch in _batches(requests, max_shapes):
            patch_annotations(server, "job", job.id, DELETE, {kind: batch})
            ids = [int(x["id"]) for x in batch]
            manifest.discard(kind, ids)
            manifest.save()
            result.deleted[kind].extend(ids)


def verify_job(server: Server, before: Mapping[str, Any], result: JobWrite,
               manifest: Manifest, attribute_defaults: Mapping[int, str]) -> list[str]:
    """Read one job back; list what differs from the plan (empty: all as intended).

    Each created object must read back as created, each deleted one be gone, and every other
    annotation that was there before still be there, unchanged.
    """
    job = result.job
    after = get_annotations(server, "job", job.id)
    problems = []
    for kind in OBJECT_KINDS:
        now = {int(x["id"]): x for x in after.get(kind) or [] if x.get("id") is not None}
        entries = manifest.entries(kind)
        changed = [x["id"] for x in result.created[kind] if int(x["id"]) not in now
                   or fingerprint(now[int(x["id"])], attribute_defaults)
                   != entries.get(int(x["id"]), {}).get("fingerprint")]
        if changed:
            problems.append(f"job {job.id}: {len(changed)} created {kind} do not read back as "
                            f"created (ids {', '.join(map(str, changed[:10]))})")
        still = sorted(set(result.deleted[kind]) & set(now))
        if still:
            problems.append(f"job {job.id}: {len(still)} {kind} to delete are still there "
                            f"(ids {', '.join(map(str, still[:10]))})")
    old, new = canonical(before), canonical(after)
    for key, items in old.items():
        gone = set(result.deleted.get(key, []))
        now = {item.get("id"): item for item in new[key]}
        lost = [item.get("id") for item in items
                if item.get("id") not in gone and now.get(item.get("id")) != item]
        if lost:
            problems.append(f"job {job.id}: {len(lost)} {key} that were there before read "
                            f"back changed or missing (ids {', '.join(map(str, lost[:10]))}); "
                            "was someone editing the job meanwhile?")
    created = {kind: {int(x["id"]) for x in result.created[kind]} for kind in OBJECT_KINDS}
    for key, items in new.items():
        known = {item.get("id") for item in old[key]} | created.get(key, set())
        extra = [item.get("id") for item in items if item.get("id") not in known]
        if extra:
            problems.append(f"job {job.id}: {len(extra)} {key} appeared that this run did not "
                            f"create (ids {', '.join(map(str, extra[:10]))})")
    return problems
