"""``autotrack task export``: the reviewed jobs of CVAT tasks as an Ultralytics dataset.

For each task: its annotation jobs (:func:`autotrack.cvat.task.jobs.list_jobs`), those in the
chosen states and stages (default: state ``completed``), each job's annotations read at job
level (``GET /api/jobs/ID/annotations``: CVAT stores a piece of a track per job, and each
job's frames take their boxes from that job only; a frame two jobs share is the first
chosen job's). The dataset is :mod:`autotrack.finetune.dataset`'s: boxes as CVAT interpolates
them, every keyframe plus a stride, near-duplicates dropped, a split by time blocks. Only the
chosen frames are downloaded (:class:`~autotrack.cvat.task.frames.TaskFrames`: one request per
chunk that holds a chosen frame). Nothing is written to the server, so the command takes
no ``--backup-dir``.

``--project ID`` adds every task of a project: the project is read first
(``GET /api/projects/ID``: an unknown or hidden project is an error, where the task list
alone would just be empty), then its tasks (``GET /api/tasks?project_id=ID``, paged, in id
order) and its labels (``GET /api/labels?project_id=ID``, which its tasks share: CVAT keeps
a project task's labels on the project). The same job filter applies to each task; a task
of the project without data, not 2D or with no reviewed job is skipped with a line. Classes
come from the projects' labels (in their order), then from the other tasks'.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from autotrack.errors import InputError

JOB_STATES = ("new", "in progress", "rejected", "completed")  # CVAT's StateChoice
JOB_STAGES = ("annotation", "validation", "acceptance")  # CVAT's StageChoice


def _choices(text: str | None, allowed: tuple[str, ...], option: str) -> frozenset[str] | None:
    """``"completed,in-progress"`` as a set of CVAT's names; None for no filter."""
    if text is None:
        return None
    chosen = set()
    for item in text.split(","):
        name = item.strip().lower().replace("-", " ").replace("_", " ")
        if not name:
            continue
        if name not in allowed:
            raise InputError(f"{option} {item.strip()!r}: CVAT's are "
                             f"{', '.join(repr(a) for a in allowed)}")
        chosen.add(name)
    if not chosen:
        raise InputError(f"{option} names nothing")
    return frozenset(chosen)


def _project_id(text: str) -> int:
    from autotrack.cvat.task.annotate import _task_id

    try:
        return _task_id(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("TASK_ID", "PROJECT_ID")) from None


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """``autotrack task export``'s own options (the server ones come from
    :func:`autotrack.cvat.task.commands.add_server_arguments`)."""
    from autotrack.cvat.task.annotate import _task_id
    from autotrack.finetune.dataset import add_dataset_arguments

    parser.add_argument("task_ids", nargs="*", type=_task_id, metavar="TASK_ID",
                        help="the tasks to export (or --task ID, repeated)")
    parser.add_argument("--task", dest="more_task_ids", action="append", type=_task_id,
                        default=[], metavar="TASK_ID", help="a task to export (repeatable)")
    parser.add_argument("--project", dest="project_ids", action="append", type=_project_id,
                        default=[], metavar="PROJECT_ID",
                        help="export every task of this project (repeatable); classes from "
                             "the project's labels")
    jobs = parser.add_argument_group("which jobs count as reviewed")
    jobs.add_argument("--states", default="completed", metavar="STATES",
                      help="comma-separated job states to export: new, in-progress, rejected, "
                           "completed (default completed)")
    jobs.add_argument("--stages", metavar="STAGES",
                      help="comma-separated job stages to export: annotation, validation, "
                           "acceptance (default: any stage)")
    add_dataset_arguments(parser)


def _reviewed(job: Any, states: frozenset[str] | None, stages: frozenset[str] | None) -> bool:
    return (states is None or job.state in states) and (stages is None or job.stage in stages)


def _no_jobs_message(found: dict[int, list[Any]], states: frozenset[str] | None,
                     stages: frozenset[str] | None) -> str:
    wanted = " and ".join(part for part in (
        f"state {' or '.join(sorted(states))}" if states else "",
        f"stage {' or '.join(sorted(stages))}" if stages else "") if part)
    listed = "; ".join(f"task {task}: " + (", ".join(str(job) for job in jobs) or "no jobs")
                       for task, jobs in found.items())
    present = sorted({job.state for jobs in found.values() for job in jobs})
    hint = (f"--states {','.join(s.replace(' ', '-') for s in present)} includes them"
            if present else "the task has no annotation jobs")
    if stages:
        hint += " (with --stages left out)"
    return f"no reviewed frames: no job is in {wanted or 'the chosen states'} ({listed}); {hint}"


def _project_tasks(server: Any, project_id: int, out: TextIO) -> tuple[list[int], list[Any]]:
    """The ids of a project's tasks (ascending) and the project's labels; the project must
    exist and be visible (404/403 otherwise, one line)."""
    from autotrack.cvat.task.frames import load_labels

    api = server.api
    project, _ = server.call(f"read project {project_id}", api.projects_api.retrieve,
                             project_id)
    task_ids = sorted(int(t.id) for t in server.pages(
        f"list the tasks of project {project_id}", api.tasks_api.list, project_id=project_id))
    if not task_ids:
        raise InputError(f"project {project_id} ({project.name!r}) has no tasks")
    print(f"project {project_id} ({project.name!r}): tasks "
          f"{', '.join(map(str, task_ids))}", file=out)
    return task_ids, load_labels(server, project_id=project_id)


def run_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from autotrack.cvat.task.annotations import get_annotations
    from autotrack.cvat.task.commands import open_server
    from autotrack.cvat.task.connection import CvatTaskError
    from autotrack.cvat.task.frames import TaskFrames, load_labels, load_target
    from autotrack.cvat.task.jobs import list_jobs
    from autotrack.finetune.dataset import (
        DatasetOptions,
        DatasetWriter,
        Piece,
        Source,
        build_dataset,
        class_names,
    )

    given = list(dict.fromkeys([*args.task_ids, *args.more_task_ids]))
    projects = list(dict.fromkeys(args.project_ids))
    if not given and not projects:
        raise InputError("expected TASK_ID (or --task ID, or --project ID)")
    options = DatasetOptions.from_args(args)
    states = _choices(args.states, JOB_STATES, "--states")
    stages = _choices(args.stages, JOB_STAGES, "--stages")
    DatasetWriter(args.output, [])  # refuses an existing -o before any request
    server, _ = open_server(args)
    try:
        # each task once: a project's tasks with the project's labels, then the others
        task_ids: dict[int, list[Any] | None] = {}
        label_lists = []
        for project_id in projects:
            ids, labels = _project_tasks(server, project_id, out)
            label_lists.append([(label.name, label.type) for label in labels])
            task_ids.update((i, labels) for i in ids if i not in task_ids)
        task_ids.update((i, None) for i in given if i not in task_ids)
        sources, readers, found = [], {}, {}
        for task_id, project_labels in task_ids.items():
            try:
                target = load_target(server, task_id=task_id)
            except CvatTaskError as exc:
                if project_labels is None:
                    raise
                print(f"task {task_id}: skipped ({exc})", file=out)
                continue
            if target.dimension.lower() != "2d":
                why = (f"task {task_id} is a {target.dimension.upper()} task; a dataset of "
                       "boxes needs a 2D task")
                if project_labels is None:
                    raise CvatTaskError(why)
                print(f"{target}: skipped ({why})", file=out)
                continue
            jobs = list_jobs(server, task_id)
            found[task_id] = jobs
            chosen = [job for job in jobs if _reviewed(job, states, stages)]
            if not chosen:
                print(f"{target}: no reviewed job, skipped "
                      f"({', '.join(str(job) for job in jobs) or 'no jobs'})", file=out)
                continue
            labels = project_labels
            if labels is None:
                labels = load_labels(server, target)
                label_lists.append([(label.name, label.type) for label in labels])
            pieces = [Piece(str(job), job.start, job.stop,
                            get_annotations(server, "job", job.id)) for job in chosen]
            source = Source(
                name=str(target), key=f"task{task_id}",
                labels={label.id: label.name for label in labels}, pieces=pieces,
                deleted=target.deleted_frames,
                about={"server": server.url, "task": task_id, "task_name": target.name,
                       "jobs": [{"id": j.id, "frames": [j.start, j.stop], "state": j.state,
                                 "stage": j.stage, "exported": j in chosen} for j in jobs]})
            sources.append(source)

            def read(frames: Any, target: Any = target) -> Any:
                return TaskFrames(server, target, frames,
                                  warn=lambda message: print(f"warning: {message}", file=err))

            readers[source.key] = read
            print(f"{target}: {len(chosen)} of {len(jobs)} jobs reviewed "
                  f"({', '.join(f'job {j.id}' for j in chosen)})", file=out)
        if not sources:
            raise InputError(_no_jobs_message(found, states, stages))
        names = class_names(label_lists, options.classes)
        with tqdm(unit="frame", disable=args.quiet or None, desc="export", file=err) as bar:
            result = build_dataset(sources, readers, names, options, args.output,
                                   on_frame=bar.update)
    finally:
        server.close()
    print(result.summary(), file=out)
    return 0
