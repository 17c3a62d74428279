"""Create tracks on a CVAT task or job, find the ones this tool made earlier, delete only those.

Tracks go up with ``PATCH .../annotations?action=create`` in batches; after each batch the
ids the server gave them, with a fingerprint of what it stored, go into the manifest (see
:mod:`autotrack.cvat.task.backup`), so even an upload cut short leaves a manifest that knows every
track it created.
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
    get_annotations,
    patch_annotations,
    track_fingerprint,
)
from autotrack.cvat.task.backup import Manifest, utc_now
from autotrack.cvat.task.connection import Server
from autotrack.cvat.task.frames import Target

# Keyframes per PATCH request: a few hundred kB of JSON, well inside a web server's body limit.
MAX_SHAPES_PER_REQUEST = 2000


def track_span(track: Mapping[str, Any], last_frame: int) -> tuple[int, int]:
    """First and last frame where CVAT shows the track.

    A track ends the frame before its closing outside keyframe; one whose last keyframe is
    visible stays visible to the end of the task (``last_frame``).
    """
    shapes = sorted(track.get("shapes") or [], key=lambda s: int(s["frame"]))
    if not shapes:
        frame = int(track["frame"])
        return frame, frame
    first, last = int(shapes[0]["frame"]), shapes[-1]
    end = int(last["frame"]) - 1 if last.get("outside") else max(last_frame, int(last["frame"]))
    return first, max(first, end)


@dataclass
class OwnTracks:
    """The manifest's tracks as found on the server now."""

    ours: list[dict[str, Any]] = field(default_factory=list)  # provably ours, in range
    edited: list[int] = field(default_factory=list)  # ours once, changed since: kept
    out_of_range: list[int] = field(default_factory=list)  # ours, outside the frames: kept
    crossing: list[int] = field(default_factory=list)  # ours, partly outside the frames: kept
    missing: list[int] = field(default_factory=list)  # in the manifest, not on the target


def find_own_tracks(annotations: Mapping[str, Any], manifest: Manifest,
                    attribute_defaults: Mapping[int, str], frames: tuple[int, int],
                    task_last_frame: int) -> OwnTracks:
    """Sort the target's tracks listed in the manifest into removable and kept ones.

    Removable: id in the manifest, ``source`` still ``auto``, content unchanged (same
    fingerprint) and shown only inside ``frames`` (first, last), the frames being recomputed.
    A track reaching past them is kept whole: removing it would lose the part this run does
    not recompute. Anything else stays too.
    """
    found = OwnTracks()
    present = set()
    for track in annotations.get("tracks") or []:
        track_id = track.get("id")
        if track_id is None or int(track_id) not in manifest.tracks:
            continue
        present.add(int(track_id))
        entry = manifest.tracks[int(track_id)]
        if (track.get("source") != "auto"
                or track_fingerprint(track, attribute_defaults) != entry.get("fingerprint")):
            found.edited.append(int(track_id))
            continue
        first, last = track_span(track, task_last_frame)
        if last < frames[0] or first > frames[1]:
            found.out_of_range.append(int(track_id))
        elif first < frames[0] or last > frames[1]:
            found.crossing.append(int(track_id))
        else:
            found.ours.append(track)
    found.missing = sorted(set(manifest.tracks) - present)
    return found


def _batches(tracks: Sequence[dict[str, Any]], max_shapes: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    shapes = 0
    for track in tracks:
        n = len(track.get("shapes") or [])
        if batch and shapes + n > max_shapes:
            yield batch
            batch, shapes = [], 0
        batch.append(track)
        shapes += n
    if batch:
        yield batch


@dataclass
class CreateResult:
    created: list[dict[str, Any]]  # the tracks as the server answered, with ids
    sent: int
    unconfirmed: int  # tracks sent whose id the server did not report


def create_tracks(server: Server, target: Target, tracks: Sequence[dict[str, Any]],
                  manifest: Manifest, attribute_defaults: Mapping[int, str], *,
                  max_shapes: int = MAX_SHAPES_PER_REQUEST) -> CreateResult:
    """Add ``tracks`` (LabeledTrack JSON without ids); record every created id in the manifest."""
    created: list[dict[str, Any]] = []
    unconfirmed = 0
    run = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    for batch in _batches(tracks, max_shapes):
        answer = patch_annotations(server, target.kind, target.id, CREATE, {"tracks": batch})
        returned = [t for t in (answer or {}).get("tracks") or [] if t.get("id") is not None]
        for track in returned:
            first, last = track_span(track, target.task_size - 1)
            manifest.add(int(track["id"]), track_fingerprint(track, attribute_defaults),
                         label_id=int(track["label_id"]), frames=[first, last],
                         created_at=run, via=f"{target.kind} {target.id}")
        if returned:
            manifest.save()
        unconfirmed += max(0, len(batch) - len(returned))
        created.extend(returned)
    return CreateResult(created, len(tracks), unconfirmed)


def delete_tracks(server: Server, target: Target, tracks: Sequence[Mapping[str, Any]],
                  manifest: Manifest, *, max_shapes: int = MAX_SHAPES_PER_REQUEST) -> int:
    """Delete these (provably own) tracks by id; drop them from the manifest. Returns count."""
    requests = [as_track_request(t) for t in tracks]
    deleted = 0
    for batch in _batches(requests, max_shapes):
        patch_annotations(server, target.kind, target.id, DELETE, {"tracks": batch})
        manifest.discard(int(t["id"]) for t in batch)
        manifest.save()
        deleted += len(batch)
    return deleted


def verify_upload(server: Server, target: Target, before: Mapping[str, Any],
                  created: Sequence[Mapping[str, Any]], deleted_ids: Iterable[int],
                  manifest: Manifest, attribute_defaults: Mapping[int, str]) -> list[str]:
    """Read the target back; list what differs from the plan (empty: all as intended).

    Checks that each created track reads back as created, each deleted one is gone, and
    every other annotation that was there before is still there, unchanged.
    """
    after = get_annotations(server, target.kind, target.id)
    problems = []
    tracks_now = {int(t["id"]): t for t in after.get("tracks") or [] if t.get("id") is not None}
    changed = [t["id"] for t in created if int(t["id"]) not in tracks_now
               or track_fingerprint(tracks_now[int(t["id"])], attribute_defaults)
               != manifest.tracks.get(int(t["id"]), {}).get("fingerprint")]
    if changed:
        problems.append(f"{len(changed)} created tracks do not read back as created "
                        f"(ids {', '.join(map(str, changed[:10]))})")
    still = sorted(set(int(i) for i in deleted_ids) & set(tracks_now))
    if still:
        problems.append(f"{len(still)} tracks to delete are still there "
                        f"(ids {', '.join(map(str, still[:10]))})")
    gone = set(int(i) for i in deleted_ids)
    old = canonical(before)
    new = canonical(after)
    for key, items in old.items():
        now = {item.get("id"): item for item in new[key]}
        lost = [item.get("id") for item in items
                if not (key == "tracks" and item.get("id") in gone)
                and now.get(item.get("id")) != item]
        if lost:
            problems.append(f"{len(lost)} {key} that were there before read back changed or "
                            f"missing (ids {', '.join(map(str, lost[:10]))}); was someone "
                            "editing the task meanwhile?")
    return problems
