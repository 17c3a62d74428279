"""Backups of a task's annotations before any write, their exact restore, and the manifest of
tracks this tool created (how ``--replace`` knows which tracks are its own).

A backup holds each job's annotations as the server returns them (``GET
/api/jobs/{id}/annotations``: CVAT stores annotations per job), plus the task-level read for
reference, wrapped with where they came from. ``restore`` puts each job back with ``PUT
/api/jobs/{id}/annotations`` (which replaces that job's annotations), without ids: CVAT refuses
preset ids in a PUT (cvat-ai/cvat PR #9583, ``tracks: id: must be absent``), so the objects
come back with new ids, and reads every job again to check it holds what the backup holds.

The manifest lives beside the backups, one file per server and task. For every track (and
mask shape) this tool created it records the id the server gave it, its job, and a
fingerprint of its content as the server stored it. An object counts as the tool's own only
when its id is in the manifest, its ``source`` is still ``auto``, and its content still has
that fingerprint: an object a person made is never in the manifest, and one a person edited
no longer matches, so neither is ever deleted. A restore that brings the tool's objects back
under new ids moves their manifest entries to the new ids.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotrack.cvat.task.annotations import (
    canonical,
    counts,
    fingerprint,
    get_annotations,
    put_annotations,
    without_ids,
)
from autotrack.cvat.task.connection import Server, host_label
from autotrack.errors import InputError

BACKUP_FORMAT = "autotrack-cvat-annotations-backup"
MANIFEST_FORMAT = "autotrack-cvat-created-tracks"
FORMAT_VERSION = 2  # 2: one entry per job; 1: the task-level read only
MANIFEST_VERSION = 1
_MAX_NAME_TRIES = 1000


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomic(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_backup(folder: str | os.PathLike[str], server_url: str, kind: str, target_id: int,
                task_id: int, jobs: Mapping[int, Mapping[str, Any]], *, reason: str,
                task_annotations: Mapping[str, Any] | None = None) -> Path:
    """Write a new backup file (never overwriting one) and return its path.

    The name holds the server host, the task (or job) id and the UTC time:
    ``cvat.example.com-task12-20261105T101500Z.json``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the backup folder {folder}: {exc.strerror}") from None
    moment = utc_now()
    document = {
        "format": BACKUP_FORMAT,
        "version": FORMAT_VERSION,
        "server": server_url,
        "resource": kind,
        "id": int(target_id),
        "task_id": int(task_id),
        "saved_at": _iso(moment),
        "reason": reason,
        "jobs": [{"id": int(job_id), "annotations": data} for job_id, data in jobs.items()],
        "annotations": task_annotations,  # the task-level read, for reference
    }
    stem = f"{host_label(server_url)}-{kind}{target_id}-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    for attempt in range(_MAX_NAME_TRIES):
        path = folder / (f"{stem}.json" if attempt == 0 else f"{stem}-{attempt + 1}.json")
        try:
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(f"cannot write the backup {path}: {exc.strerror}") from None
        return path
    raise InputError(f"cannot find a free backup file name for {stem} in {folder}")


@dataclass(frozen=True)
class Backup:
    path: Path
    server: str
    kind: str
    id: int
    task_id: int
    saved_at: str
    jobs: dict[int, dict[str, Any]]  # job id -> its annotations; empty in a version 1 backup
    annotations: dict[str, Any] | None  # the task-level read (all a version 1 backup holds)


def read_json(path: Path, what: str) -> Any:
    """The JSON document in ``path``; one clear :class:`InputError` line if it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable {what} ({exc})") from None


def load_backup(path: str | os.PathLike[str]) -> Backup:
    """Read and check a backup file written by :func:`save_backup`."""
    path = Path(path)
    document = read_json(path, "backup file")
    if not isinstance(document, dict) or document.get("format") != BACKUP_FORMAT:
        raise InputError(f"{path}: not an autotrack annotations backup")
    version = document.get("version")
    if version not in (1, FORMAT_VERSION):
        raise InputError(f"{path}: backup version {version!r} is not 1 or {FORMAT_VERSION}")
    annotations = document.get("annotations")
    try:
        kind = str(document["resource"])
        jobs = {int(j["id"]): dict(j["annotations"]) for j in document.get("jobs") or []}
        if kind not in ("task", "job") or not (jobs or isinstance(annotations, dict)):
            raise ValueError
        if any(not isinstance(data, dict) for data in jobs.values()):
            raise ValueError
        return Backup(path, str(document["server"]), kind, int(document["id"]),
                      int(document.get("task_id", document["id"])),
                      str(document.get("saved_at", "")), jobs,
                      annotations if isinstance(annotations, dict) else None)
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: backup is missing its server, resource or annotations") from None


def restore_command(server_url: str, path: Path, user: str | None = None) -> str:
    """The command line that restores ``path`` (the password comes from the environment or a
    prompt, a token from ``$CVAT_ACCESS_TOKEN``)."""
    auth = f" --auth {user}" if user else ""
    return f"autotrack task restore {path} --server-host {server_url}{auth}"


@dataclass(frozen=True)
class RestoreResult:
    safety_backup: Path
    same_content: bool  # every job reads back as the backup holds it, ids aside
    differing_jobs: list[int]
    summary: str


def _content(annotations: Mapping[str, Any]) -> dict[str, Any]:
    return canonical(annotations, ids=False)


def restore(server: Server, backup: Backup, backup_dir: str | os.PathLike[str],
            manifest: Manifest | None = None,
            attribute_defaults: Mapping[int, str] | None = None) -> RestoreResult:
    """Put a backup's annotations back, job by job, and check each job.

    What is there now is backed up first, so a restore can itself be undone. A version 1
    backup (the task-level read only) is put back with one task-level PUT, which CVAT cuts
    into the jobs itself. ``manifest``: entries of objects that come back under new ids move
    to those ids (matched by job and fingerprint).
    """
    jobs = sorted(backup.jobs)
    if jobs:
        current = {job_id: get_annotations(server, "job", job_id) for job_id in jobs}
    else:
        current = {}
    task_now = get_annotations(server, backup.kind, backup.id)
    safety = save_backup(backup_dir, server.url, backup.kind, backup.id, backup.task_id, current,
                         reason=f"before restoring {backup.path.name}", task_annotations=task_now)
    differing: list[int] = []
    if not jobs:  # version 1
        put_annotations(server, backup.kind, backup.id, without_ids(backup.annotations))
        after = get_annotations(server, backup.kind, backup.id)
        same = _content(after) == _content(backup.annotations or {})
        return RestoreResult(safety, same, [] if same else [backup.id], counts(after))
    totals = {"shapes": 0, "tracks": 0, "tags": 0}
    for job_id in jobs:
        put_annotations(server, "job", job_id, without_ids(backup.jobs[job_id]))
        after = get_annotations(server, "job", job_id)
        if _content(after) != _content(backup.jobs[job_id]):
            differing.append(job_id)
        if manifest is not None:
            manifest.follow_restore(job_id, after, attribute_defaults or {})
        for key in totals:
            totals[key] += len(after.get(key) or [])
    if manifest is not None:
        manifest.save()
    summary = (f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {totals['shapes']} shapes, "
               f"{totals['tracks']} tracks, {totals['tags']} tags")
    return RestoreResult(safety, not differing, differing, summary)


class Manifest:
    """The objects this tool created on one server's task: per kind ("tracks", "shapes"),
    id -> fingerprint and facts (job, label, frames, when)."""

    def __init__(self, path: Path, server_url: str, task_id: int,
                 objects: dict[str, dict[int, dict[str, Any]]] | None = None) -> None:
        self.path = path
        self.server_url = server_url
        self.task_id = task_id
        self.objects: dict[str, dict[int, dict[str, Any]]] = {"tracks": {}, "shapes": {}}
        for kind, entries in (objects or {}).items():
            self.objects[kind] = dict(entries)

    @property
    def tracks(self) -> dict[int, dict[str, Any]]:
        return self.objects["tracks"]

    def entries(self, kind: str) -> dict[int, dict[str, Any]]:
        return self.objects.setdefault(kind, {})

    @staticmethod
    def path_for(folder: str | os.PathLike[str], server_url: str, task_id: int) -> Path:
        return Path(folder) / f"{host_label(server_url)}-task{task_id}-created-tracks.json"

    @classmethod
    def load(cls, folder: str | os.PathLike[str], server_url: str, task_id: int) -> Manifest:
        path = cls.path_for(folder, server_url, task_id)
        if not path.exists():
            return cls(path, server_url, task_id)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != MANIFEST_FORMAT or int(document["task_id"]) != task_id:
                raise ValueError("not a manifest of this task")
            objects = {kind: {int(k): dict(v) for k, v in (document.get(kind) or {}).items()}
                       for kind in ("tracks", "shapes")}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: unreadable manifest of created tracks ({exc}); move it "
                             "away to start a new one (then --replace removes nothing)") from None
        return cls(path, server_url, task_id, objects)

    def save(self) -> None:
        _write_json_atomic(self.path, {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "server": self.server_url,
            "task_id": self.task_id,
            **{kind: {str(k): v for k, v in sorted(entries.items())}
               for kind, entries in self.objects.items()},
        })

    def add(self, kind: str, object_id: int, digest: str, **facts: Any) -> None:
        self.entries(kind)[int(object_id)] = {"fingerprint": digest, **facts}

    def discard(self, kind: str, object_ids: Iterable[int]) -> None:
        for object_id in object_ids:
            self.entries(kind).pop(int(object_id), None)

    def follow_restore(self, job_id: int, annotations: Mapping[str, Any],
                       attribute_defaults: Mapping[int, str]) -> None:
        """After a restore of ``job_id``: entries whose id is gone move to a restored object of
        the same job, kind and fingerprint (each restored object claimed once)."""
        for kind, entries in self.objects.items():
            present = {int(x["id"]): x for x in annotations.get(kind) or []
                       if x.get("id") is not None}
            lost = [i for i, e in entries.items() if e.get("job") == job_id and i not in present]
            if not lost:
                continue
            claimed = set(entries)
            by_digest: dict[str, list[int]] = {}
            for object_id, item in present.items():
                if object_id not in claimed and item.get("source") == "auto":
                    by_digest.setdefault(fingerprint(item, attribute_defaults), []).append(
                        object_id)
            for old_id in lost:
                entry = entries.pop(old_id)
                candidates = by_digest.get(entry["fingerprint"]) or []
                if candidates:
                    entries[candidates.pop(0)] = entry


__all__ = [
    "Backup",
    "Manifest",
    "RestoreResult",
    "load_backup",
    "restore",
    "restore_command",
    "save_backup",
]
