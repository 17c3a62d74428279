"""A task's jobs: where CVAT really stores annotations, and which of them a run may write.

CVAT keeps every annotation row with one job (``cvat/apps/dataset_manager/task.py``,
``JobAnnotation``); a task-level write is cut into the jobs by CVAT itself and a task-level
read stitches the pieces back together (see :mod:`autotrack.cvat.task.slicing`). Writing job
by job makes what lands in each job exactly what this tool computed, lets it skip the jobs
people already finished, and lets it find its own pieces again in every job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autotrack.cvat.task.connection import Server

FINISHED_STATES = frozenset({"completed"})
FINISHED_STAGES = frozenset({"acceptance"})
_PAGE_SIZE = 500
_MAX_PAGES = 200  # 100k jobs: a bound on the paging loop, far above real tasks


@dataclass(frozen=True)
class Job:
    """One annotation job: its frames (task numbering, inclusive) and where people are."""

    id: int
    start: int
    stop: int
    state: str  # new, in progress, rejected, completed
    stage: str  # annotation, validation, acceptance
    type: str = "annotation"

    @property
    def finished(self) -> bool:
        """People are done with it: a run must not change it unless told to."""
        return self.state in FINISHED_STATES or self.stage in FINISHED_STAGES

    def overlaps(self, first: int, last: int) -> bool:
        return self.start <= last and first <= self.stop

    def __str__(self) -> str:
        return f"job {self.id} (frames {self.start}-{self.stop}, {self.stage}, {self.state})"


def _text(value: object) -> str:
    return str(getattr(value, "value", value) or "")


def list_jobs(server: Server, task_id: int) -> list[Job]:
    """The task's annotation jobs in frame order (ground-truth and consensus jobs left out)."""
    jobs: list[Job] = []
    for item in server.pages(f"list the jobs of task {task_id}", server.api.jobs_api.list,
                             page_size=_PAGE_SIZE, max_pages=_MAX_PAGES, task_id=task_id):
        if _text(item.get("type") or "annotation") != "annotation":
            continue
        jobs.append(Job(int(item.id), int(item.start_frame), int(item.stop_frame),
                        _text(item.get("state")), _text(item.get("stage")),
                        _text(item.get("type") or "annotation")))
    return sorted(jobs, key=lambda job: (job.start, job.id))


@dataclass(frozen=True)
class JobPlan:
    """The jobs a run writes to, and those it leaves alone and why."""

    write: tuple[Job, ...]
    finished: tuple[Job, ...]  # people finished them; skipped without --include-completed

    def summary(self) -> str:
        text = f"{len(self.write)} job{'s' if len(self.write) != 1 else ''} to write"
        if self.finished:
            ids = ", ".join(str(job.id) for job in self.finished)
            text += (f"; skipped {len(self.finished)} finished (completed or in acceptance): "
                     f"job {ids} (--include-completed writes them too)")
        return text


def plan_jobs(jobs: Iterable[Job], first: int, last: int, *,
              include_completed: bool = False) -> JobPlan:
    """The jobs touching frames ``first``-``last``, split into written and skipped."""
    touching = [job for job in jobs if job.overlaps(first, last)]
    finished = tuple(job for job in touching if job.finished and not include_completed)
    write = tuple(job for job in touching if job not in finished)
    return JobPlan(write, finished)
