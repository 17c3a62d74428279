"""Detect and track objects in a CVAT task's video and upload them as tracks (not shapes).

CVAT's own batch auto-annotation (``cvat-cli task auto-annotate``) writes a box per frame.
This job streams a task's (or job's) frames through cvat-sdk, runs a detector and ByteTrack,
thins each track to the keyframes CVAT's interpolation needs, and adds them to the task as
``LabeledTrack`` s. Before it writes anything it saves the task's annotations to a backup
file; ``restore BACKUP`` puts them back exactly. ``--replace`` first removes the tracks an
earlier run of this tool created, and only those (see :mod:`autotrack.cvat.task.backup`).

Command line: ``autotrack task annotate`` (:mod:`autotrack.cvat.task.commands`). Errors a user
can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from autotrack.cvat.task.annotate_masks import add_mask_arguments
from autotrack.errors import InputError
from autotrack.speed import SpeedOptions, add_speed_arguments
from autotrack.tracking_options import (
    TrackingOptions,
    add_tracking_arguments,
    bounded_float,
    fraction,
)


def _frame_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: frame numbers start at 0")
    return value


def add_annotate_arguments(parser: argparse.ArgumentParser) -> None:
    """``autotrack task annotate``'s own options (the server options come from
    :func:`autotrack.cvat.task.commands.add_server_arguments`)."""
    from autotrack.detectors import DEFAULT_DETECTOR
    from autotrack.keyframes import DEFAULT_KEYFRAME_IOU

    parser.add_argument("task_id", nargs="?", type=_task_id, metavar="TASK_ID",
                        help="the task to annotate (or --job JOB_ID)")
    job = parser.add_argument_group("what to annotate")
    job.add_argument("--job", type=int, metavar="JOB_ID",
                     help="annotate one job (its frames only) instead of a whole task")
    job.add_argument("--start", type=_frame_number, help="first task frame to process")
    job.add_argument("--stop", type=_frame_number, help="last task frame to process (inclusive)")
    job.add_argument("--include-completed", action="store_true",
                     help="also write into jobs people finished (state completed or stage "
                          "acceptance), which are skipped by default")
    job.add_argument("--image-sequence", action="store_true",
                     help="accept an image task (mode 'annotation'); say so only when its "
                          "images are consecutive frames of one video")
    job.add_argument("--dry-run", action="store_true",
                     help="run everything, write nothing: print what would be uploaded")
    job.add_argument("--replace", action="store_true",
                     help="remove the tracks earlier runs of this tool created in these frames "
                          "(never tracks a person made or edited)")
    model = parser.add_argument_group("detector and tracker")
    model.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"model name or file (default {DEFAULT_DETECTOR})")
    model.add_argument("--classes", help="comma-separated detector classes to track "
                                         "(default: every class that has a task label)")
    model.add_argument("--label-map", metavar="CLASS=LABEL,...",
                       help="task label for detector classes whose names differ, e.g. "
                            "person=pedestrian,car=vehicle")
    add_tracking_arguments(model)
    add_speed_arguments(model)
    model.add_argument("--keyframe-iou", type=fraction, default=None,
                       help="keep a keyframe where CVAT's interpolation would fall below this "
                            f"IoU with the tracker's box (default {DEFAULT_KEYFRAME_IOU}); "
                            "with --segmenter, where the mask moved below this IoU from the "
                            "last kept one")
    model.add_argument("--fps", type=bounded_float(0.0, 1000.0), default=30.0,
                       help="the video's frame rate, which CVAT does not store; scales "
                            "--track-buffer (default 30)")
    model.add_argument("--device", help="model device, e.g. cpu, cuda:0")
    add_mask_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _task_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"TASK_ID must be a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"TASK_ID must be positive, got {value}")
    return value


class _CountingDetector:
    """A detector wrapper that counts, per class the job does not track, frames it appears in."""

    def __init__(self, detector: Any, tracked: np.ndarray, min_score: float, count: bool) -> None:
        self._detector = detector
        self._tracked = tracked
        self._min_score = min_score
        self._count = count
        self.class_names = detector.class_names
        self.thread_safe = getattr(detector, "thread_safe", False)  # the count has its lock
        self.frames_with: Counter[int] = Counter()
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> Any:
        detections = self._detector.detect(frame)
        if self._count and len(detections):
            other = ~np.isin(detections.class_ids, self._tracked)
            other &= detections.scores >= self._min_score
            with self._lock:
                self.frames_with.update(np.unique(detections.class_ids[other]).tolist())
        return detections


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def _label_report(tracks_json: list[dict[str, Any]], tracked_frames: dict[int, int],
                  plan: Any) -> list[str]:
    lines = []
    for name, label in plan.label_of_class.items():
        mine = [t for t in tracks_json if t["label_id"] == label.id]
        visible = sum(1 for t in mine for s in t["shapes"] if not s["outside"])
        outside = sum(1 for t in mine for s in t["shapes"] if s["outside"])
        lines.append(f"  {name} -> label {label}: {len(mine)} tracks, {visible} keyframes "
                     f"(+{outside} outside markers) for {tracked_frames.get(label.id, 0)} "
                     "tracked frames")
    return lines


def run_annotate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Annotate the TASK_ID of the command line, or the job of ``--job``."""
    if args.job is not None:
        if args.task_id is not None:
            raise InputError("give either TASK_ID or --job JOB_ID, not both")
        return _annotate(args, out, err, task_id=None, job_id=args.job)
    if args.task_id is None:
        raise InputError("expected a TASK_ID (or --job JOB_ID)")
    return _annotate(args, out, err, task_id=args.task_id, job_id=None)


@dataclass
class _Run:
    """Everything one annotation run needs, gathered before any model starts."""

    server: Any  # autotrack.cvat.task.connection.Server
    target: Any  # autotrack.cvat.task.frames.Target
    frames: list[int]
    labels: list[Any]  # autotrack.cvat.task.labels.TaskLabel
    jobs: Any  # autotrack.cvat.task.jobs.JobPlan
    attribute_defaults: dict[int, str]
    manifest: Any  # autotrack.cvat.task.backup.Manifest
    user: str | None
    plan: Any = None  # autotrack.cvat.task.labels.LabelPlan (detector runs)
    detector: Any = None
    speed: SpeedOptions | None = None  # how the detector was built and frames are fed to it

    @property
    def span(self) -> tuple[int, int]:
        return self.frames[0], self.frames[-1]


def _check_options(args: argparse.Namespace) -> None:
    """Option errors, found before anything touches the network."""
    TrackingOptions.from_args(args)  # checks --conf, --low-conf, --track-buffer, --smooth
    if args.start is not None and args.stop is not None and args.start > args.stop:
        raise InputError(f"--start {args.start} is after --stop {args.stop}")
    from autotrack.cvat.task.annotate_masks import check_segment_options

    check_segment_options(args)


def _annotate(args: argparse.Namespace, out: TextIO, err: TextIO, *, task_id: int | None,
              job_id: int | None) -> int:
    from autotrack.cvat.task.commands import open_server

    _check_options(args)
    server, credentials = open_server(args)
    try:
        run = _prepare(server, args, task_id, job_id, credentials.user)
        what = (f"{args.segmenter} masks" if args.segmenter
                else f"{args.detector} + {args.tracker}")
        print(f"{run.target}: frames {run.span[0]}-{run.span[1]} ({len(run.frames)} to "
              f"process), {what}; {run.jobs.summary()}", file=out)
        if not run.jobs.write:
            print(f"nothing to do: every job of {run.target} in these frames is finished; "
                  "--include-completed writes into them", file=out)
            return 0
        if args.segmenter:
            from autotrack.cvat.task.annotate_masks import segment_for_task

            payload = segment_for_task(run, args, out, err)
        else:
            payload = {"tracks": _detect_and_track(run, args, out, err), "shapes": []}
        if args.dry_run:
            return _dry_run(run, payload, args, out)
        return _write(run, payload, args, out, err)
    finally:
        server.close()


def _prepare(server: Any, args: argparse.Namespace, task_id: int | None, job_id: int | None,
             user: str | None) -> _Run:
    """Read and check the target and its jobs, pick its frames, map labels, load the
    detector (the segmenters load once their prompts are known)."""
    from autotrack.cvat.task.backup import Manifest
    from autotrack.cvat.task.frames import (
        check_trackable,
        load_labels,
        load_target,
        select_frames,
    )
    from autotrack.cvat.task.jobs import list_jobs, plan_jobs

    target = load_target(server, task_id=task_id, job_id=job_id)
    check_trackable(target, image_sequence=args.image_sequence)
    frames = select_frames(target, args.start, args.stop)
    jobs = list_jobs(server, target.task_id)
    if target.kind == "job":
        jobs = [job for job in jobs if job.id == target.id]
        if jobs and jobs[0].finished and not args.include_completed:
            raise InputError(f"{jobs[0]} is finished; pass --include-completed to write into "
                             "it anyway")
    job_plan = plan_jobs(jobs, frames[0], frames[-1], include_completed=args.include_completed)
    labels = load_labels(server, target)
    defaults = {spec: value for label in labels for spec, value in label.attribute_defaults.items()}
    manifest = Manifest.load(args.backup_dir, server.url, target.task_id)
    run = _Run(server, target, frames, labels, job_plan, defaults, manifest, user)
    if not args.segmenter:
        from autotrack.cvat.task.labels import plan_labels
        from autotrack.detectors import load_detector

        run.speed = speed = SpeedOptions.from_args(args)
        run.detector = load_detector(args.detector, min_score=args.low_conf, device=args.device,
                                     threads=speed.session_threads, batch=speed.frames_per_call)
        classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
        run.plan = plan_labels(run.detector.class_names, labels, label_map=args.label_map,
                               classes=classes, task_name=f"task {target.task_id}")
    return run


def _detect_and_track(run: _Run, args: argparse.Namespace, out: TextIO,
                      err: TextIO) -> list[dict[str, Any]]:
    """Stream the frames through detector and ByteTrack; print and return the thinned tracks."""
    from tqdm import tqdm

    from autotrack.cvat.task.frames import TaskFrames
    from autotrack.detect_every import tracker_frame_rate
    from autotrack.export.cvat_json import tracks_to_cvat_json
    from autotrack.pipeline import track_video

    target, plan, names = run.target, run.plan, run.detector.class_names
    source = TaskFrames(run.server, target, run.frames, fps=args.fps,
                        warn=lambda message: print(f"warning: {message}", file=err))
    counting = _CountingDetector(run.detector, plan.class_ids, args.conf,
                                 count=not plan.restricted)
    options = TrackingOptions.from_args(args)
    speed = run.speed
    tracker = options.tracker(tracker_frame_rate(args.fps, speed.detect_every,
                                                 options.tracker_name), device=args.device)
    with tqdm(total=len(run.frames), unit="frame", disable=args.quiet or None,
              desc=f"{target.kind} {target.id}", file=err) as bar:
        # frames are downloaded (chunk by chunk) ahead of the detector, as a video is decoded
        result = track_video(source, counting, tracker, class_ids=plan.class_ids,
                             on_frame=lambda _: bar.update(), smooth=options.smooth,
                             refine=options.refine_config(args.fps), speed=speed,
                             camera_motion=options.camera_motion_estimator())
    tracks_json = tracks_to_cvat_json(
        result.tracks, names, min_iou=args.keyframe_iou, frame_count=target.last_frame + 1,
        label_ids=plan.label_ids(), source="auto", width=target.width,
        height=target.height)["tracks"]

    label_of_class = {i: plan.label_of_class[name].id for i, name in enumerate(names)
                      if name in plan.label_of_class}
    tracked_frames: Counter[int] = Counter()
    for track in result.tracks:
        if track.class_id in label_of_class:
            tracked_frames[label_of_class[track.class_id]] += len(track.frames)
    total = sum(tracked_frames.values())
    visible = sum(1 for t in tracks_json for s in t["shapes"] if not s["outside"])
    outside = sum(1 for t in tracks_json for s in t["shapes"] if s["outside"])
    verb = "would upload" if args.dry_run else "to upload"
    print(f"{verb}: {len(tracks_json)} tracks, {visible} keyframes (+{outside} outside markers) "
          f"for {total} tracked frames ({_pct(visible, total)}) over {len(run.frames)} frames",
          file=out)
    for line in _label_report(tracks_json, tracked_frames, plan):
        print(line, file=out)
    if counting.frames_with:
        found = ", ".join(f"{names[c]} (in {n} frames)" for c, n in sorted(
            counting.frames_with.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"not uploaded, no label in task {target.task_id}: {found}; map them with "
              "--label-map CLASS=LABEL", file=out)
    if source.fallback_frames:
        print(f"note: {source.fallback_frames} frames were fetched one by one (chunks "
              "unusable)", file=out)
    return tracks_json


def _read_jobs(run: _Run) -> dict[int, dict[str, Any]]:
    from autotrack.cvat.task.annotations import get_annotations

    return {job.id: get_annotations(run.server, "job", job.id) for job in run.jobs.write}


def _own_objects(run: _Run, before: dict[int, dict[str, Any]]) -> dict[int, Any]:
    from autotrack.cvat.task.upload import find_own_objects

    return {job.id: find_own_objects(before[job.id], run.manifest, job, run.attribute_defaults,
                                     run.span) for job in run.jobs.write}


def _total(own: dict[int, Any]) -> Any:
    from autotrack.cvat.task.upload import OwnObjects

    total = OwnObjects()
    for found in own.values():
        total.add(found)
    return total


def _dry_run(run: _Run, payload: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
             out: TextIO) -> int:
    from autotrack.cvat.task.slicing import split_for_jobs

    pieces = split_for_jobs(payload, run.jobs.write)
    for job in run.jobs.write:
        piece = pieces[job.id]
        print(f"would write to {job}: {len(piece['tracks'])} tracks, "
              f"{len(piece['shapes'])} shapes", file=out)
    if args.replace:
        own = _total(_own_objects(run, _read_jobs(run)))
        print(f"would remove {own.count()} objects earlier runs created in frames "
              f"{run.span[0]}-{run.span[1]}" + _kept(own), file=out)
    print("dry run: nothing was written to the server and no backup was made", file=out)
    return 0


def _write(run: _Run, payload: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
           out: TextIO, err: TextIO) -> int:
    """Back up every job, then per job: create the pieces, remove the replaced objects, read
    back and check. Any difference is an error (exit 1) that names the undo command."""
    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.cvat.task.backup import restore_command, save_backup
    from autotrack.cvat.task.slicing import split_for_jobs
    from autotrack.cvat.task.upload import JobWrite, create_objects, delete_objects, verify_job

    server, target, manifest = run.server, run.target, run.manifest
    pieces = split_for_jobs(payload, run.jobs.write)
    sending = sum(len(p["tracks"]) + len(p["shapes"]) for p in pieces.values())
    if not sending and not args.replace:
        print(f"nothing to upload; {target} was not changed", file=out)
        return 0
    before = _read_jobs(run)
    own = _own_objects(run, before) if args.replace else {}
    if not sending and not _total(own).count():
        print(f"nothing to upload or remove; {target} was not changed" + _kept(_total(own)),
              file=out)
        return 0
    backup = save_backup(args.backup_dir, server.url, target.kind, target.id, target.task_id,
                         before, reason="before an autotrack upload",
                         task_annotations=get_annotations(server, target.kind, target.id))
    undo = restore_command(server.url, backup, run.user)
    print(f"backup of the annotations before this upload: {backup}", file=out)
    print(f"to undo the upload: {undo}", file=out)
    problems: list[str] = []
    results = []
    for job in run.jobs.write:
        result = JobWrite(job)
        results.append(result)
        create_objects(server, job, pieces[job.id], manifest, run.attribute_defaults, result)
        if job.id in own:
            delete_objects(server, job, own[job.id], manifest, result)
        problems += verify_job(server, before[job.id], result, manifest, run.attribute_defaults)
    created = {kind: sum(r.created_count(kind) for r in results) for kind in ("tracks", "shapes")}
    print(f"uploaded {created['tracks']} tracks and {created['shapes']} shapes to "
          f"{len(results)} job{'s' if len(results) != 1 else ''} of {target} (a track crossing "
          f"a job boundary is one piece per job, as CVAT stores it); ids listed in "
          f"{manifest.path}", file=out)
    unconfirmed = sum(r.unconfirmed for r in results)
    if unconfirmed:
        problems.append(f"the server did not report ids for {unconfirmed} created objects; "
                        "--replace cannot remove those")
    if own:
        total = _total(own)
        print(f"replaced: removed {total.count()} objects earlier runs created in frames "
              f"{run.span[0]}-{run.span[1]}" + _kept(total), file=out)
    if run.jobs.finished:
        print(f"not written: {run.jobs.summary().split('; ', 1)[1]}", file=out)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=err)
        print(f"error: {target} does not read back as written; undo with: {undo}", file=err)
        return 1
    print("checked: every job written reads back as intended", file=out)
    return 0


def _kept(own: Any) -> str:
    kept = []
    if own.edited:
        kept.append(f"{len(own.edited)} edited since (kept)")
    if own.out_of_range:
        kept.append(f"{len(own.out_of_range)} outside these frames (kept)")
    if own.crossing:
        kept.append(f"{len(own.crossing)} reaching past these frames (kept; a run over their "
                    "frames replaces them)")
    return f"; {', '.join(kept)}" if kept else ""
