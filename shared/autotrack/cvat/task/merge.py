"""``autotrack task merge``: find the tracks a tracker broke one object into, show them for a
person to decide, and merge the chosen ones in CVAT without losing an annotation.

Without ``--apply`` or ``--join`` it only reads: it prints the proposals (best first) and
writes them to a proposals file, which a later ``--apply --proposals FILE`` uses if the tracks
it names have not changed since, and a review page beside it (:mod:`autotrack.merge.review`,
thumbnails from the chunks that hold the frames it shows). Person pieces are compared on
appearance too (:mod:`autotrack.merge.appearance`: Re-ID embeddings of the crops of their
first and last boxes, read from only the chunks that hold those frames; ``--reid none`` off).
``--join 12,15,19`` merges the given tracks, as the UI's merge (M) does but across jobs too.
Every write is backed up first (the backup ``autotrack task restore`` takes), done job by
job (:mod:`autotrack.cvat.task.merge_plan`), read back and checked, and logged: ``--undo
LOG`` puts the pieces back and removes the merged track, and refuses, naming the track, if
someone has edited the merged track since.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from autotrack.errors import InputError

LOG_FORMAT = "autotrack-merge-log"
PROPOSALS_FORMAT = "autotrack-merge-proposals"


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    from autotrack.merge.listing import add_choice_arguments

    parser.add_argument("task", nargs="?", type=int, metavar="TASK_ID",
                        help="the task (its id, as in its URL)")
    parser.add_argument("--job", type=int, metavar="J",
                        help="propose merges inside this job only")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--apply", action="store_true",
                      help="merge the proposals at or above --min-confidence (or --accept)")
    what.add_argument("--join", metavar="ID,ID,...",
                      help="merge these tracks (task-level ids, as the UI and exports show "
                           "them) into one, across jobs")
    what.add_argument("--undo", metavar="LOG",
                      help="undo the merges a merge log (written by --apply or --join) lists")
    add_choice_arguments(parser, accept="with --apply: merge exactly these proposals (their "
                                        "numbers, as printed and on the review page)")
    parser.add_argument("--proposals", metavar="FILE",
                        help="with --apply: the proposals a run without --apply wrote (refused "
                             "if their tracks changed since); default: propose again")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would change in each job; write nothing")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="the proposals file (default: BACKUP_DIR/"
                             "task<ID>-merge-proposals.json); the review page "
                             "task<ID>-merge-review.html goes beside it")


@dataclass
class _Task:
    """One task as read for a merge."""

    server: Any
    task_id: int
    target: Any  # autotrack.cvat.task.frames.Target
    jobs: list[Any]
    labels: dict[int, str]
    defaults: dict[int, str]
    tracks: dict[int, dict[str, Any]]  # task-level read, by id
    job_reads: dict[int, dict[str, Any]] = field(default_factory=dict)  # read to merge only


def _read(server: Any, task_id: int) -> _Task:
    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.cvat.task.frames import load_labels, load_target
    from autotrack.cvat.task.jobs import list_jobs

    target = load_target(server, task_id=task_id)
    labels = load_labels(server, target)
    jobs = list_jobs(server, task_id)
    task_read = get_annotations(server, "task", task_id)
    tracks = {int(t["id"]): t for t in task_read.get("tracks") or [] if t.get("id") is not None}
    return _Task(server, task_id, target, jobs, {label.id: label.name for label in labels},
                 {spec: value for label in labels
                  for spec, value in label.attribute_defaults.items()}, tracks)


def _task_id(args: argparse.Namespace) -> int:
    if args.task is None:
        raise InputError("give the task id: autotrack task merge TASK_ID")
    return int(args.task)


def run_merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from autotrack.cvat.task.commands import open_server
    from autotrack.merge.listing import parse_ids

    if args.undo:
        return _undo(args, out, err)
    task_id = _task_id(args)
    if args.accept and not args.apply:
        raise InputError("--accept chooses what --apply merges; add --apply")
    server, credentials = open_server(args)
    try:
        task = _read(server, task_id)
        if args.join:
            groups = [parse_ids(args.join, "--join")]
        else:
            groups = _propose(task, args, out, err)
            if not args.apply:
                return 0
        if not groups:
            print("nothing to merge", file=out)
            return 0
        return _merge(task, groups, args, credentials.user, out, err)
    finally:
        server.close()


# --- proposals -----------------------------------------------------------------------------


def _proposals_path(args: argparse.Namespace, task_id: int) -> Path:
    if args.output:
        return Path(args.output)
    return Path(args.backup_dir) / f"task{task_id}-merge-proposals.json"


def _propose(task: _Task, args: argparse.Namespace, out: TextIO,
             err: TextIO) -> list[list[int]]:
    """Print the proposals, save them and write their review page; with --apply, the chains
    of track ids to merge."""
    from autotrack.cvat.task.merge_plan import track_digest
    from autotrack.merge.listing import chains, chosen, print_proposals

    if args.apply and args.proposals:
        listed = _load_proposals(Path(args.proposals), task)
    else:
        listing = _fresh_proposals(task, args, out, err)
        listed = listing.rows
        path = _proposals_path(args, task.task_id)
        _write_json(path, {"format": PROPOSALS_FORMAT, "version": 1,
                           "server": task.server.url, "task_id": task.task_id,
                           "tracks": {str(i): track_digest(t) for i, t in task.tracks.items()},
                           "proposals": listed})
        print_proposals(listed, out)
        print(f"proposals saved to {path}; merge them with: autotrack task merge "
              f"{task.task_id} --apply --proposals {path} [--accept N,N]", file=out)
        if not args.apply:
            page = _write_review(task, args, listing, path, err)
            print(f"review page: {page} (open it in a browser)", file=out)
    if not args.apply:
        return []
    return chains([(p["before"], p["after"])
                   for p in chosen(listed, args.accept, args.min_confidence)])


def _task_frames(task: _Task, err: TextIO) -> Any:
    """``frames_at`` over the task's frames: only the chunks that hold one are downloaded."""
    from autotrack.cvat.task.frames import TaskFrames

    target = task.target

    def frames_at(frames: Sequence[int]) -> Any:
        inside = [f for f in frames if target.first_frame <= f <= target.last_frame
                  and f not in target.deleted_frames]
        if not inside:
            return iter(())
        return iter(TaskFrames(task.server, target, inside,
                               warn=lambda line: print(f"warning: {line}", file=err)))

    return frames_at


def _fresh_proposals(task: _Task, args: argparse.Namespace, out: TextIO, err: TextIO) -> Any:
    """The proposals on the task as it is, with appearance (the end frames' chunks read) for
    the labels of --reid-labels unless --reid none."""
    from autotrack.merge.appearance import PieceEmbedder, appearance_labels
    from autotrack.merge.listing import list_proposals, uses_appearance

    tracks = task.tracks
    if args.job is not None:
        job = next((j for j in task.jobs if j.id == args.job), None)
        if job is None:
            raise InputError(f"job {args.job} is not a job of task {task.task_id}")
        tracks = {i: t for i, t in tracks.items() if _span_inside(t, job.start, job.stop)}
    embed = None
    if uses_appearance(args):
        embed = PieceEmbedder(str(args.reid), appearance_labels(args.reid_labels),
                              _task_frames(task, err))
    listing = list_proposals(tracks, task.labels, embed=embed)
    if embed is not None:
        print(embed.summary(), file=out)
    return listing


def _write_review(task: _Task, args: argparse.Namespace, listing: Any, proposals: Path,
                  err: TextIO) -> Path:
    """The review page beside the proposals file, its thumbnails from the task's frames
    (only the chunks that hold a frame it shows are downloaded)."""
    import shlex

    from autotrack.cvat.task.commands import DEFAULT_BACKUP_DIR
    from autotrack.files import write_atomically
    from autotrack.merge.review import forward_frames, needed_frames, review_page

    target = task.target
    words = ["autotrack", "task", "merge", str(task.task_id), "--apply", "--proposals",
             str(proposals), "--server-host", task.server.url]
    if args.backup_dir != DEFAULT_BACKUP_DIR:
        words += ["--backup-dir", str(args.backup_dir)]
    stream = _task_frames(task, err)(needed_frames(listing.rows, listing.pieces))
    try:
        page = review_page(listing.rows, listing.pieces, forward_frames(stream),
                           title=f"task {task.task_id} {target.name!r} on {task.server.url}",
                           command=shlex.join(words), min_confidence=args.min_confidence,
                           rest=f"all of them are in {proposals}")
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return write_atomically(proposals.with_name(f"task{task.task_id}-merge-review.html"),
                            page.encode("utf-8"))


def _span_inside(track: Mapping[str, Any], start: int, stop: int) -> bool:
    from autotrack.merge.cvat_tracks import shown_span

    span = shown_span(track)
    return span is not None and span[0] <= stop and span[1] >= start


def _load_proposals(path: Path, task: _Task) -> list[dict[str, Any]]:
    from autotrack.cvat.task.backup import read_json
    from autotrack.cvat.task.merge_plan import track_digest

    document = read_json(path, "proposals file")
    if not isinstance(document, dict) or document.get("format") != PROPOSALS_FORMAT:
        raise InputError(f"{path}: not an autotrack merge proposals file")
    if document.get("task_id") != task.task_id:
        raise InputError(f"{path} holds proposals for task {document.get('task_id')}, not "
                         f"task {task.task_id}")
    listed = document.get("proposals")
    digests = document.get("tracks")
    if not isinstance(listed, list) or not isinstance(digests, dict):
        raise InputError(f"{path}: the proposals or the tracks they were made from are missing")
    changed = sorted({int(p[side]) for p in listed for side in ("before", "after")
                      if int(p[side]) not in task.tracks
                      or digests.get(str(p[side])) != track_digest(task.tracks[int(p[side])])})
    if changed:
        raise InputError(f"{path} is older than the task: track "
                         f"{', '.join(map(str, changed[:10]))} changed or went since it was "
                         f"written; propose again (autotrack task merge {task.task_id})")
    return listed


# --- writing -------------------------------------------------------------------------------


def _merge(task: _Task, groups: Sequence[Sequence[int]], args: argparse.Namespace,
           user: str | None, out: TextIO, err: TextIO) -> int:
    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.cvat.task.backup import restore_command, save_backup
    from autotrack.cvat.task.merge_plan import one_shape_per_frame, plan_merge

    # the jobs' own rows: only a merge needs them (proposals come from the task-level read)
    task.job_reads = {job.id: get_annotations(task.server, "job", job.id) for job in task.jobs}
    plans = [plan_merge(task.tracks, ids, task.jobs, task.job_reads, bridge=args.bridge,
                        trim=args.trim) for ids in groups]
    for plan in plans:
        what = " + ".join(map(str, plan.track_ids))
        jobs = ", ".join(f"{c.job.id} (-{len(c.delete)} +{int(c.create is not None)})"
                         for c in plan.changes)
        print(f"merge {what}: job {jobs}", file=out)
        for note in plan.report.trimmed:
            print(f"  trimmed: {note}", file=out)
    if args.dry_run:
        print("dry run: nothing written", file=out)
        return 0
    touched = sorted({c.job.id for plan in plans for c in plan.changes})
    backup = save_backup(args.backup_dir, task.server.url, "task", task.task_id, task.task_id,
                         {j: task.job_reads[j] for j in touched}, reason="before a merge",
                         task_annotations={"tracks": list(task.tracks.values())})
    print(f"backup of the annotations before this merge: {backup} (restore with: "
          f"{restore_command(task.server.url, backup, user)})", file=out)
    log_path = _log_path(args.backup_dir, task.task_id)
    log = {"format": LOG_FORMAT, "version": 1, "server": task.server.url,
           "task_id": task.task_id, "backup": str(backup), "merges": []}
    problems: list[str] = []
    for plan in plans:
        entry = {"tracks": list(plan.track_ids), "jobs": []}
        log["merges"].append(entry)
        for change in plan.changes:
            created = _apply_change(task, change)
            entry["jobs"].append({"job": change.job.id, "created": created, "deleted": [
                _without_ids(one_shape_per_frame(p)) for p in change.delete]})
            _write_json(log_path, log)  # after every job: an interruption leaves a usable log
            problems += _verify_job(task, change, created)
    problems += _verify_task(task, plans)
    print(f"merged {len(plans)} group{'s' if len(plans) != 1 else ''} of tracks; undo with: "
          f"autotrack task merge --undo {log_path} --server-host {task.server.url}"
          + (f" --auth {user}" if user else ""), file=out)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=err)
        print(f"error: task {task.task_id} does not read back as merged; undo with: "
              f"autotrack task merge --undo {log_path}, or restore {backup}", file=err)
        return 1
    print("checked: every job written, and the task, read back as intended", file=out)
    return 0


def _without_ids(value: Any) -> Any:
    from autotrack.cvat.task.annotations import without_ids

    return without_ids(value)


def _apply_change(task: _Task, change: Any) -> list[dict[str, Any]]:
    """Create the job's new piece, then delete its old pieces (a tracks-only payload: cvat-sdk
    matches ids against every table). Returns the created tracks' ids and fingerprints."""
    from autotrack.cvat.task.annotations import (
        CREATE,
        DELETE,
        as_track_request,
        fingerprint,
        patch_annotations,
    )

    created = []
    if change.create is not None:
        answer = patch_annotations(task.server, "job", change.job.id, CREATE,
                                   {"tracks": [as_track_request(change.create)]})
        for track in (answer or {}).get("tracks") or []:
            created.append({"id": int(track["id"]),
                            "fingerprint": fingerprint(track, task.defaults)})
    if change.delete:
        patch_annotations(task.server, "job", change.job.id, DELETE,
                          {"tracks": [as_track_request(p) for p in change.delete]})
    return created


def _verify_job(task: _Task, change: Any, created: list[dict[str, Any]]) -> list[str]:
    """Read the job back: the new piece as sent, the old pieces gone, the rest untouched."""
    from autotrack.cvat.task.annotations import canonical, fingerprint, get_annotations

    job = change.job.id
    after = get_annotations(task.server, "job", job)
    problems = []
    if change.create is not None:
        sent = fingerprint(change.create, task.defaults)
        ids = [c["id"] for c in created]
        now = {int(t["id"]): t for t in after.get("tracks") or []}
        if len(ids) != 1 or ids[0] not in now or fingerprint(now[ids[0]], task.defaults) != sent:
            problems.append(f"job {job}: the merged track does not read back as sent")
    gone = {int(p["id"]) for p in change.delete}
    new = {c["id"] for c in created}
    before = canonical(task.job_reads[job])
    now_read = canonical(after)
    for key in ("tags", "shapes", "tracks"):
        kept_before = [x for x in before[key] if key != "tracks" or int(x["id"]) not in gone]
        kept_after = [x for x in now_read[key] if key != "tracks" or int(x["id"]) not in new]
        if kept_before != kept_after:
            problems.append(f"job {job}: {key} other than the merged ones read back changed; "
                            "was someone editing the job meanwhile?")
    return problems


def _verify_task(task: _Task, plans: Sequence[Any]) -> list[str]:
    """Read the task back: each merged track is one track showing what was merged, and none
    of the pieces' ids is left."""
    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.merge.cvat_tracks import shape_at, shown_span

    tracks = get_annotations(task.server, "task", task.task_id).get("tracks") or []
    ids = {int(t["id"]) for t in tracks if t.get("id") is not None}
    problems = []
    for plan in plans:
        left = sorted(set(plan.track_ids) & ids)  # CVAT never gives a new track an old id
        if left:
            problems.append(f"track {', '.join(map(str, left))} is still in the task")
        first, last = shown_span(plan.merged)  # type: ignore[misc]
        frames = range(first, last + 1)

        def same(track: Mapping[str, Any]) -> bool:
            for frame in frames:
                a, b = shape_at(plan.merged, frame), shape_at(track, frame)
                if (a is None) != (b is None):
                    return False
                if a is not None and max(abs(float(x) - float(y)) for x, y in
                                         zip(a["points"], b["points"])) > 0.02:
                    return False
            return True

        if not any(t.get("label_id") == plan.merged["label_id"] and same(t) for t in tracks):
            problems.append(f"no track of the task shows the merge of "
                            f"{' + '.join(map(str, plan.track_ids))} on frames {first}-{last}")
    return problems


# --- the log and undo ---------------------------------------------------------------------


def _log_path(folder: str | os.PathLike[str], task_id: int) -> Path:
    from autotrack.cvat.task.backup import utc_now

    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    base = Path(folder) / f"task{task_id}-merge-{stamp}"
    path = base.with_suffix(".json")
    index = 2
    while path.exists():
        path = Path(f"{base}-{index}.json")
        index += 1
    return path


def _write_json(path: Path, document: Any) -> None:
    from autotrack.files import write_atomically

    write_atomically(path, (json.dumps(document, indent=1) + "\n").encode("utf-8"))


def _load_log(path: Path) -> dict[str, Any]:
    from autotrack.cvat.task.backup import read_json

    log = read_json(path, "merge log")
    if not isinstance(log, dict) or log.get("format") != LOG_FORMAT or \
            not isinstance(log.get("merges"), list):
        raise InputError(f"{path}: not an autotrack merge log")
    return log


def _undo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Put every merge of the log back, newest first, after checking that no merged track
    was edited (or removed) since; refuses before writing anything otherwise."""
    from autotrack.cvat.task.annotations import (
        CREATE,
        DELETE,
        as_track_request,
        fingerprint,
        get_annotations,
        patch_annotations,
    )
    from autotrack.cvat.task.backup import save_backup
    from autotrack.cvat.task.commands import open_server, server_url
    from autotrack.cvat.task.connection import normalize_url
    from autotrack.cvat.task.frames import load_labels, load_target

    path = Path(args.undo)
    log = _load_log(path)
    url = server_url(args, log["server"])
    if url != normalize_url(log["server"]):
        raise InputError(f"{path} was written for {log['server']}, not {url}")
    task_id = int(log["task_id"])
    server, _ = open_server(args, log["server"])
    try:
        labels = load_labels(server, load_target(server, task_id=task_id))
        defaults = {s: v for label in labels for s, v in label.attribute_defaults.items()}
        steps = [(m, j) for m in reversed(log["merges"]) for j in m["jobs"]]
        reads = {j["job"]: get_annotations(server, "job", int(j["job"])) for _, j in steps}
        for merge, job in steps:
            now = {int(t["id"]): t for t in reads[job["job"]].get("tracks") or []}
            for made in job["created"]:
                track = now.get(int(made["id"]))
                if track is None or fingerprint(track, defaults) != made["fingerprint"]:
                    state = "is gone" if track is None else "was edited"
                    raise InputError(
                        f"the merged track {made['id']} in job {job['job']} (merge of "
                        f"{' + '.join(map(str, merge['tracks']))}) {state} since the merge: "
                        f"undo refused, nothing written (the backup {log.get('backup')} still "
                        "restores the task as it was before the merge)")
        backup = save_backup(args.backup_dir, server.url, "task", task_id, task_id, reads,
                             reason="before undoing a merge")
        print(f"backup of the annotations before this undo: {backup}", file=out)
        problems = []
        for _, job in steps:
            job_id = int(job["job"])
            made = [int(m["id"]) for m in job["created"]]
            doomed = [t for t in reads[job_id].get("tracks") or [] if int(t["id"]) in made]
            if doomed:
                patch_annotations(server, "job", job_id, DELETE,
                                  {"tracks": [as_track_request(t) for t in doomed]})
            if job["deleted"]:
                patch_annotations(server, "job", job_id, CREATE, {"tracks": job["deleted"]})
            after = get_annotations(server, "job", job_id)
            prints = sorted(fingerprint(t, defaults) for t in after.get("tracks") or [])
            expected = sorted([fingerprint(t, defaults) for t in reads[job_id].get("tracks") or []
                               if int(t["id"]) not in made]
                              + [fingerprint(t, defaults) for t in job["deleted"]])
            if prints != expected:
                problems.append(f"job {job_id} does not read back as before the merge")
            reads[job_id] = after  # an older merge in the same job starts from this
    finally:
        server.close()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=err)
        print(f"error: restore {backup} to return to the state before this undo", file=err)
        return 1
    merges = len(log["merges"])
    print(f"undid {merges} merge{'s' if merges != 1 else ''} of {path}: the pieces are back "
          "(with new ids) and the merged tracks removed; checked by reading every job back",
          file=out)
    return 0


__all__ = ["add_merge_arguments", "run_merge"]
