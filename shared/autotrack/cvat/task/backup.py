"""Backups of a task's annotations before any write, their exact restore, and the manifest of
tracks this tool created (how ``--replace`` knows which tracks are its own).

A backup is the server's own annotations JSON (``GET .../annotations``) wrapped with where it
came from; ``restore`` puts it back with ``PUT .../annotations`` (which replaces everything)
and reads the task again to check the result.

The manifest lives beside the backups, one file per server and task. For every track this
tool created it records the id the server gave it and a fingerprint of its content as the
server stored it. A track counts as the tool's own only when its id is in the manifest, its
``source`` is still ``auto``, and its content still has that fingerprint: a track a person
made is never in the manifest, and one a person edited no longer matches, so neither is
ever deleted.
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
    get_annotations,
    put_annotations,
)
from autotrack.cvat.task.connection import Server, host_label
from autotrack.errors import InputError

BACKUP_FORMAT = "autotrack-cvat-annotations-backup"
MANIFEST_FORMAT = "autotrack-cvat-created-tracks"
FORMAT_VERSION = 1
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
                task_id: int, annotations: Mapping[str, Any], *, reason: str) -> Path:
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
        "annotations": annotations,
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
    annotations: dict[str, Any]


def load_backup(path: str | os.PathLike[str]) -> Backup:
    """Read and check a backup file written by :func:`save_backup`."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such backup file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON backup ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != BACKUP_FORMAT:
        raise InputError(f"{path}: not an autotrack annotations backup")
    if document.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: backup version {document.get('version')!r} is not "
                         f"{FORMAT_VERSION}")
    annotations = document.get("annotations")
    try:
        kind = str(document["resource"])
        if kind not in ("task", "job") or not isinstance(annotations, dict):
            raise ValueError
        return Backup(path, str(document["server"]), kind, int(document["id"]),
                      int(document.get("task_id", document["id"])),
                      str(document.get("saved_at", "")), annotations)
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
    exact: bool  # the task reads back identical to the backup, ids included
    same_content: bool  # identical apart from ids
    summary: str


def restore(server: Server, backup: Backup, backup_dir: str | os.PathLike[str]) -> RestoreResult:
    """Put a backup's annotations back on its task or job, exactly, and check.

    The annotations there now are backed up first, so a restore can itself be undone.
    """
    current = get_annotations(server, backup.kind, backup.id)
    safety = save_backup(backup_dir, server.url, backup.kind, backup.id, backup.task_id, current,
                         reason=f"before restoring {backup.path.name}")
    put_annotations(server, backup.kind, backup.id, backup.annotations)
    after = get_annotations(server, backup.kind, backup.id)
    exact = canonical(after) == canonical(backup.annotations)
    same = exact or canonical(after, ids=False) == canonical(backup.annotations, ids=False)
    return RestoreResult(safety, exact, same, counts(after))


class Manifest:
    """The tracks this tool created on one server's task: id -> fingerprint and facts."""

    def __init__(self, path: Path, server_url: str, task_id: int,
                 tracks: dict[int, dict[str, Any]] | None = None) -> None:
        self.path = path
        self.server_url = server_url
        self.task_id = task_id
        self.tracks: dict[int, dict[str, Any]] = tracks or {}

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
            tracks = {int(k): dict(v) for k, v in document["tracks"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: unreadable manifest of created tracks ({exc}); move it "
                             "away to start a new one (then --replace removes nothing)") from None
        return cls(path, server_url, task_id, tracks)

    def save(self) -> None:
        _write_json_atomic(self.path, {
            "format": MANIFEST_FORMAT,
            "version": FORMAT_VERSION,
            "server": self.server_url,
            "task_id": self.task_id,
            "tracks": {str(k): v for k, v in sorted(self.tracks.items())},
        })

    def add(self, track_id: int, fingerprint: str, **facts: Any) -> None:
        self.tracks[int(track_id)] = {"fingerprint": fingerprint, **facts}

    def discard(self, track_ids: Iterable[int]) -> None:
        for track_id in track_ids:
            self.tracks.pop(int(track_id), None)


__all__ = [
    "Backup",
    "Manifest",
    "RestoreResult",
    "load_backup",
    "restore",
    "restore_command",
    "save_backup",
]
