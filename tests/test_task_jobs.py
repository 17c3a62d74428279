"""``autotrack task annotate`` on tasks split into several jobs, against the test server's
per-job model of CVAT (tests/cvat_server.py follows cvat/apps/dataset_manager/task.py and
annotation.py): what a task-level read then shows, ``--replace`` and ``restore`` in every
job, ``--job``, finished jobs, and the segmenters on a task."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from autotrack.cvat.task.annotations import canonical
from autotrack.cvat.task.slicing import shape_at

from conftest import MODELS_DIR
from cvat_server import CvatTestServer, FrameStore
from test_annotate_task import patch_bodies, run_tool

LABELS = ["person", "car", "truck"]
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def server(vtest_video: Path):
    with CvatTestServer(FrameStore.from_video(vtest_video)) as app:
        yield app
        assert not app.errors, app.errors[0]
        assert not app.unknown_requests()


@pytest.fixture(scope="module")
def offline_models():
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        env.setenv("AUTOTRACK_OFFLINE", "1")
        yield


def annotate(server: CvatTestServer, task: Any, backups: Path, *extra: str) -> Any:
    run = run_tool(server, str(task.id), *extra, backup_dir=backups)
    assert run.rc == 0, run.err
    return run


@pytest.fixture(scope="module")
def runs(server, offline_models, tmp_path_factory):
    """The same 795-frame video as one job, as 3 jobs with overlap 5 and with overlap 0."""
    out = {}
    for name, options in {"single": {}, "overlap5": {"segment_size": 300, "overlap": 5},
                          "overlap0": {"segment_size": 300, "overlap": 0}}.items():
        task = server.add_task(name, LABELS, **options)
        backups = tmp_path_factory.mktemp(name)
        run = annotate(server, task, backups)
        out[name] = SimpleNamespace(task=task, run=run, backups=backups,
                                    read=server.stored(task))
    return out


def per_frame(track: dict[str, Any], last: int) -> dict[int, tuple[float, ...]]:
    """Frame -> box CVAT shows for a track (its interpolation), up to task frame ``last``."""
    frames = {}
    for frame in range(int(track["frame"]), last + 1):
        shape = shape_at(track, frame)
        if shape is not None:
            frames[frame] = tuple(round(float(p), 2) for p in shape["points"])
    return frames


def assert_same_boxes(a: list[tuple], b: list[tuple]) -> None:
    """Same (label, frame) everywhere, boxes within 0.02 px (float rounding of the boundary
    keyframes CVAT's slicing adds)."""
    assert [x[:2] for x in a] == [x[:2] for x in b]
    assert np.abs(np.array([x[2] for x in a]) - np.array([x[2] for x in b])).max() <= 0.02


def label_names(task: Any) -> dict[int, str]:
    return {label["id"]: label["name"] for label in task.labels}


def boxes_by_frame(task: Any, tracks: list[dict[str, Any]], last: int) -> list[tuple]:
    """(label name, frame, box) for every frame every track shows (task-independent)."""
    names = label_names(task)
    out = []
    for track in tracks:
        out += [(names[track["label_id"]], frame, box)
                for frame, box in per_frame(track, last).items()]
    return sorted(out)


def test_jobs_are_cut_as_cvat_cuts_them(runs):
    assert [(j.start, j.stop) for j in runs["overlap5"].task.jobs] == [
        (0, 299), (295, 594), (590, 794)]
    assert [(j.start, j.stop) for j in runs["overlap0"].task.jobs] == [
        (0, 299), (300, 599), (600, 794)]
    assert "3 jobs to write" in runs["overlap5"].run.out


def test_overlap_5_reads_back_as_the_single_job_run(runs, server):
    """Every object once, the same box on every frame, and no keyframe but those CVAT itself
    adds at the job boundaries."""
    one, three = runs["single"], runs["overlap5"]
    single, multi = one.read["tracks"], three.read["tracks"]
    assert len(multi) == len(single) > 20
    assert_same_boxes(boxes_by_frame(three.task, multi, 794),
                      boxes_by_frame(one.task, single, 794))
    boundaries = {295, 299, 590, 594}
    first_box = {tuple(per_frame(t, 794).items())[0]: t for t in single}
    for track in multi:
        twin = first_box[tuple(per_frame(track, 794).items())[0]]
        extra = {s["frame"] for s in track["shapes"]} - {s["frame"] for s in twin["shapes"]}
        assert extra <= boundaries, extra
    # each job holds exactly its piece of each track
    for job in runs["overlap5"].task.jobs:
        for track in server.stored_job(job)["tracks"]:
            assert all(job.start <= s["frame"] <= job.stop for s in track["shapes"])


def test_overlap_0_reads_back_one_track_per_job_piece(runs):
    """With overlap 0 CVAT re-links nothing: a track crossing a boundary reads as two."""
    one, three = runs["single"], runs["overlap0"]
    single, multi = one.read["tracks"], three.read["tracks"]
    pieces = sum(len({min(f // 300, 2) for f in per_frame(t, 794)}) for t in single)
    assert len(multi) == pieces > len(single)
    assert_same_boxes(boxes_by_frame(three.task, multi, 794),
                      boxes_by_frame(one.task, single, 794))


def test_replace_in_every_job_keeps_a_person_edit_and_restore_undoes(server, offline_models,
                                                                     tmp_path):
    task = server.add_task("replace-jobs", ["person"], segment_size=300, overlap=5)
    annotate(server, task, tmp_path, "--stop", "400")
    job2 = task.jobs[1]
    piece = job2.annotations["tracks"][0]  # a person moves a keyframe of a piece in job 2
    piece["shapes"][-1]["points"][0] += 9.0
    piece["source"] = "manual"
    edited = piece["id"]
    before = {job.id: server.stored_job(job) for job in task.jobs}
    old = {job.id: {t["id"] for t in server.stored_job(job)["tracks"]} for job in task.jobs}

    second = annotate(server, task, tmp_path, "--stop", "400", "--replace")
    assert "1 edited since (kept)" in second.out
    for job in task.jobs:
        ids = {t["id"] for t in server.stored_job(job)["tracks"]}
        survivors = ids & old[job.id]
        assert survivors == ({edited} if job is job2 else set()), (job.id, survivors)
    deletes = [r for r in server.recorded(task=task, methods=("PATCH",))
               if r.query.get("action") == ["delete"]]
    assert deletes and all(r.path.startswith("/api/jobs/") and set(r.body) == {"tracks"}
                           for r in deletes)

    backup = re.search(r"backup of the annotations before this upload: (\S+)", second.out)
    undo = run_tool(server, "restore", backup.group(1), backup_dir=tmp_path)
    assert undo.rc == 0, undo.err
    for job in task.jobs:
        assert canonical(server.stored_job(job), ids=False) == canonical(
            before[job.id], ids=False)


def test_job_option_writes_only_inside_that_job(server, offline_models, tmp_path):
    task = server.add_task("one-job", ["person"], segment_size=300, overlap=5)
    job = task.jobs[1]
    run = run_tool(server, "--job", str(job.id), backup_dir=tmp_path)
    assert run.rc == 0, run.err
    writes = server.recorded(task=task, methods=WRITES)
    assert writes and {r.path.rstrip("/") for r in writes} == {f"/api/jobs/{job.id}/annotations"}
    assert server.stored_job(task.jobs[0])["tracks"] == []
    assert server.stored_job(task.jobs[2])["tracks"] == []
    assert all(job.start <= s["frame"] <= job.stop
               for t in server.stored_job(job)["tracks"] for s in t["shapes"])


def test_finished_jobs_are_skipped_unless_included(server, offline_models, tmp_path):
    task = server.add_task("finished", ["person"], size=60, segment_size=20, overlap=0)
    task.jobs[1].state = "completed"
    task.jobs[2].stage = "acceptance"
    run = annotate(server, task, tmp_path)
    assert re.search(r"skipped 2 finished .*job " + f"{task.jobs[1].id}, {task.jobs[2].id}",
                     run.out), run.out
    assert {r.path.rstrip("/") for r in server.recorded(task=task, methods=WRITES)} == {
        f"/api/jobs/{task.jobs[0].id}/annotations"}
    named = run_tool(server, "--job", str(task.jobs[1].id), backup_dir=tmp_path)
    assert named.rc == 2 and "--include-completed" in named.err
    again = annotate(server, task, tmp_path, "--include-completed", "--replace")
    assert "3 jobs to write" in again.out
    assert all(server.stored_job(job)["tracks"] for job in task.jobs)


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory) -> Path:
    import torch

    from autotrack.vos.sam2 import build_sam2_model

    path = tmp_path_factory.mktemp("sam2") / "sam2_random.pt"
    torch.save({"model": build_sam2_model(image_size=128, random_init=True).state_dict()}, path)
    return path


@pytest.mark.parametrize("polygons", [False, True], ids=["masks", "polygon-tracks"])
def test_segmenter_follows_boxes_drawn_on_a_frame(server, sam2_checkpoint, tmp_path, polygons):
    """A video task (mp4 chunks, which cvat-cli's auto-annotate refuses) split into jobs: the
    boxes a person drew on frame 2 become masks (or polygon tracks) on every later frame."""
    task = server.add_task("masks", ["person"], size=6, segment_size=4, overlap=0,
                           chunk_type="video", chunk_size=4)
    person = server.label_id(task, "person")
    boxes = [[100.0, 150.0, 180.0, 400.0], [400.0, 120.0, 470.0, 330.0]]
    server.seed(task, {"shapes": [{"type": "rectangle", "frame": 2, "label_id": person,
                                   "points": b, "source": "manual"} for b in boxes]})
    extra = ["--polygons"] if polygons else []
    run = run_tool(server, str(task.id), "--segmenter", "sam2", "--prompts-from-frame", "2",
                   "--checkpoint", str(sam2_checkpoint), "--image-size", "128", *extra,
                   backup_dir=tmp_path)
    assert run.rc == 0, run.err
    assert "sam2: 2 objects over 4 frames (2-5)" in run.out
    read = server.stored(task)
    if polygons:
        tracks = [t for t in read["tracks"] if t["source"] == "auto"]
        assert tracks and {s["type"] for t in tracks for s in t["shapes"]} == {"polygon"}
        assert min(t["frame"] for t in tracks) >= 2
    else:
        masks = [s for s in read["shapes"] if s["type"] == "mask"]
        assert {s["frame"] for s in masks} <= set(range(2, 6))
        assert len({s["group"] for s in masks}) <= 2 and masks
        for job in task.jobs:  # each job holds only its own frames' masks
            assert all(job.start <= s["frame"] <= job.stop
                       for s in server.stored_job(job)["shapes"] if s["type"] == "mask")
    if polygons:
        return
    rerun = run_tool(server, str(task.id), "--segmenter", "sam2", "--prompts-from-frame", "2",
                     "--checkpoint", str(sam2_checkpoint), "--image-size", "128", *extra,
                     "--replace", backup_dir=tmp_path)
    assert rerun.rc == 0, rerun.err
    def content(annotations: dict[str, Any]) -> dict[str, Any]:  # group ids are new each run
        return canonical({k: [{**x, "group": 0} for x in v] if isinstance(v, list) else v
                          for k, v in annotations.items()}, ids=False)

    assert content(server.stored(task)) == content(read)


def test_segmenter_needs_prompts_on_the_frame(server, sam2_checkpoint, tmp_path):
    task = server.add_task("no-prompts", ["person"], size=4)
    run = run_tool(server, str(task.id), "--segmenter", "sam2", "--prompts-from-frame", "1",
                   "--checkpoint", str(sam2_checkpoint), backup_dir=tmp_path)
    assert run.rc == 2 and "frame 1" in run.err, run.err
    bad = run_tool(server, str(task.id), "--segmenter", "sam2", backup_dir=tmp_path)
    assert bad.rc == 2 and "--prompts-from-frame" in bad.err
    assert not server.recorded(task=task, methods=WRITES)


@pytest.mark.parametrize("command", ["annotate", "restore"])
def test_installed_entry_point_has_the_task_commands(command):
    import subprocess

    from test_annotate_task import AUTOTRACK

    done = subprocess.run([str(AUTOTRACK), "task", command, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--server-host" in done.stdout and "--auth USER[:PASS]" in done.stdout
