"""``autotrack task export`` against the test server's model of CVAT (tests/cvat_server.py):
vtest.avi as a task of 3 jobs, some finished and some not; only the finished jobs' frames
are exported, each job's boxes from that job's own annotations, only the chunks that hold a
chosen frame downloaded; ``--project`` takes every task of a project, its labels the
project's; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autotrack.cli import main
from autotrack.finetune.dataset import shape_box, yolo_lines
from autotrack.merge.cvat_tracks import shape_at

from cvat_server import CvatTestServer
from test_task_jobs import server  # noqa: F401 (the vtest server, a fixture of this module too)

LABELS = ["person", "car", {"name": "spot", "type": "points"}]


def rect(frame: int, box: list[float], outside: bool = False) -> dict[str, Any]:
    return {"type": "rectangle", "frame": frame, "points": [float(v) for v in box],
            "outside": outside}


def walker(server: CvatTestServer, task: Any, start: int, label: str = "person") -> dict:
    """A track inside one job: keyframes 0, 40 (moved), outside at 60, back at 90."""
    return {"frame": start, "label_id": server.label_id(task, label), "shapes": [
        rect(start, [100, 100, 160, 260]), rect(start + 40, [180, 110, 240, 270]),
        rect(start + 60, [180, 110, 240, 270], outside=True),
        rect(start + 90, [400, 200, 450, 330])]}


def make_task(server: CvatTestServer, name: str, states: list[tuple[str, str]],
              project: Any = None) -> Any:
    task = server.add_task(name, [] if project else LABELS, segment_size=300, overlap=0,
                           project=project)
    for job, (state, stage) in zip(task.jobs, states, strict=True):
        job.state, job.stage = state, stage
        data = {"tracks": [walker(server, task, job.start)],
                "shapes": [{**rect(job.start + 7, [600, 400, 700, 560]),
                            "label_id": server.label_id(task, "car")}],
                "tags": [{"frame": job.start + 3, "label_id": server.label_id(task, "car")}]}
        server.seed(task, data, job=job)
    return task


def export(server: CvatTestServer, out: Path, capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["task", "export", *args, "-o", str(out), "-q", "--server-host", server.url,
               "--auth", "alice:alice-pass"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_only_finished_jobs_are_exported_with_their_own_boxes(server, tmp_path, capsys):
    task = make_task(server, "three-jobs", [("completed", "annotation"),
                                            ("in progress", "annotation"),
                                            ("completed", "acceptance")])
    out = tmp_path / "data"
    rc, stdout, err = export(server, out, capsys, str(task.id), "--stride", "20",
                             "--block", "60", "--guard", "5")
    assert rc == 0, err
    assert f"2 of 3 jobs reviewed (job {task.jobs[0].id}, job {task.jobs[2].id})" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["names"] == ["person", "car"]  # 'spot' holds points, not boxes
    rows = {row["frame"]: row for row in manifest["frames"]}
    frames = set(rows)
    dropped = {f for _, f in manifest["split"]["guard_dropped"]}
    repeats = {f for _, f in manifest["selection"]["near_duplicate_frames"]}
    assert frames and all(f <= 299 or f >= 600 for f in frames)
    keyframes = {0, 7, 40, 60, 90, 600, 607, 640, 660, 690}
    assert {f for f, row in rows.items() if row["keyframe"]} == keyframes - dropped - repeats
    assert frames | dropped | repeats == keyframes | set(range(0, 300, 20)) | set(
        range(600, 795, 20))
    assert set(manifest["split"]["frames"]) == {"train", "val"}
    for frame, row in rows.items():
        job = task.jobs[0] if frame <= 299 else task.jobs[2]
        stored = server.stored_job(job)
        classes, boxes = [], []
        for track in stored["tracks"]:
            shown = shape_at(track, frame)
            if shown is not None:
                classes.append(0)
                boxes.append(shape_box(shown))
        boxes += [shape_box(s) for s in stored["shapes"] if s["frame"] == frame]
        classes += [1] * (len(boxes) - len(classes))
        lines, _ = yolo_lines(np.array(classes), np.array(boxes).reshape(-1, 4), 768, 576)
        label = out / "labels" / row["split"] / f"task{task.id}_{frame:06d}.txt"
        assert label.read_text() == "".join(f"{line}\n" for line in lines), frame
    # frame 620 of the third job: halfway between its first two keyframes
    assert 620 in frames | dropped | repeats
    if 620 in rows:
        label = out / "labels" / rows[620]["split"] / f"task{task.id}_000620.txt"
        assert label.read_text() == "0 0.221354 0.321181 0.078125 0.277778\n"
    # only the chunks that hold a frame read (written or found a near-duplicate); none of the
    # second job's; its annotations never read; nothing written to the server
    chunks = {int(r.query["number"][0]) for r in server.recorded(task=task, route="task_data")
              if r.query.get("type") == ["chunk"]}
    assert chunks == {f // task.chunk_size for f in frames | repeats}
    assert not any(r.path.startswith(f"/api/jobs/{task.jobs[1].id}/annotations")
                   for r in server.recorded(task=task))
    assert not server.recorded(task=task, methods=("POST", "PUT", "PATCH", "DELETE"))
    assert f"wrote {out}" in stdout


def test_no_reviewed_job_is_one_line_naming_the_jobs(server, tmp_path, capsys):
    task = make_task(server, "unreviewed", [("new", "annotation"), ("in progress", "annotation"),
                                            ("rejected", "validation")])
    rc, _, err = export(server, tmp_path / "data", capsys, "--task", str(task.id))
    assert rc == 2 and err.count("\n") == 1, err
    assert "no reviewed frames: no job is in state completed" in err
    for job in task.jobs:
        assert f"job {job.id} (frames {job.start}-{job.stop}, {job.stage}, {job.state})" in err
    assert "--states in-progress,new,rejected includes them" in err
    assert list(tmp_path.iterdir()) == []
    rc, stdout, err = export(server, tmp_path / "data", capsys, str(task.id), "--states",
                             "in-progress", "--stride", "100", "--val", "0")
    assert rc == 0, err
    frames = {row["frame"] for row in json.loads(
        (tmp_path / "data" / "manifest.json").read_text())["frames"]}
    assert frames and all(300 <= f <= 599 for f in frames)


def test_an_unreadable_frame_is_one_line_and_leaves_nothing(server, tmp_path, capsys):
    task = make_task(server, "broken", [("completed", "annotation")] * 3)
    jpegs = server.frames.jpegs  # chunk 1 is made with a frame that is no image in it
    good, jpegs[40] = jpegs[40], b"not a jpeg"
    try:
        rc, _, err = export(server, tmp_path / "data", capsys, str(task.id))
    finally:
        jpegs[40] = good
    warning, error = err.splitlines()  # the chunk, then the frame alone, both refused
    assert warning.startswith("warning: chunk 1 of task") and rc == 2
    assert error == (f"autotrack: error: frame 40 of task {task.id}: the server sent something "
                     "that is not an image")
    assert list(tmp_path.iterdir()) == []


def test_bad_options_fail_before_any_request(server, tmp_path, capsys):
    before = len(server.requests)
    rc, _, err = export(server, tmp_path / "data", capsys, "1", "--states", "done")
    assert rc == 2 and "--states 'done': CVAT's are 'new', 'in progress'" in err
    rc, _, err = export(server, tmp_path / "data", capsys, "1", "--val", "1.5")
    assert rc == 2 and "--val must lie in [0, 1)" in err
    (tmp_path / "data").mkdir()
    rc, _, err = export(server, tmp_path / "data", capsys, "1")
    assert rc == 2 and "already exists" in err
    assert len(server.requests) == before


def test_a_project_exports_each_of_its_tasks_reviewed_jobs(server, tmp_path, capsys):
    project = server.add_project("street", LABELS)
    first = make_task(server, "p1", [("completed", "annotation"), ("new", "annotation"),
                                     ("in progress", "annotation")], project)
    second = make_task(server, "p2", [("new", "annotation")] * 3, project)
    third = make_task(server, "p3", [("in progress", "annotation"), ("completed", "acceptance"),
                                     ("new", "annotation")], project)
    outside = make_task(server, "not-in-it", [("completed", "annotation")] * 3)
    before = len(server.requests)
    out = tmp_path / "data"
    rc, stdout, err = export(server, out, capsys, "--project", str(project.id), "--stride",
                             "50", "--val", "0")
    assert rc == 0, err
    assert (f"project {project.id} ('street'): tasks {first.id}, {second.id}, {third.id}"
            in stdout)
    assert f"task {second.id} 'p2'" in stdout and "no reviewed job, skipped" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["names"] == ["person", "car"]  # the project's labels that hold boxes
    assert [s["key"] for s in manifest["sources"]] == [f"task{first.id}", f"task{third.id}"]
    frames = {(row["source"], row["frame"]) for row in manifest["frames"]}
    assert {f for key, f in frames if key == f"task{first.id}"} <= set(range(0, 300))
    assert {f for key, f in frames if key == f"task{third.id}"} <= set(range(300, 600))
    label = out / "labels" / "train" / f"task{third.id}_000307.txt"  # job 2: walker and car
    assert [line.split()[0] for line in label.read_text().splitlines()] == ["0", "1"]
    mine = server.requests[before:]
    assert [(r.route, r.query.get("project_id")) for r in mine
            if r.route in ("project_read", "tasks_list")][:2] == [
        ("project_read", None), ("tasks_list", [str(project.id)])]
    labels = [r.query for r in mine if r.route == "labels"]
    assert labels and all(q.get("project_id") == [str(project.id)] for q in labels)
    assert not server.recorded(task=outside)
    assert not [r for r in mine if r.method != "GET" and r.route != "login"]


def test_an_unknown_project_is_one_line(server, tmp_path, capsys):
    rc, _, err = export(server, tmp_path / "data", capsys, "--project", "999")
    assert rc == 2 and err.count("\n") == 1, err
    assert "cannot read project 999: not found" in err
    assert list(tmp_path.iterdir()) == []
    theirs = server.add_project("bobs", LABELS, owner="bob")
    rc, _, err = export(server, tmp_path / "data", capsys, "--project", str(theirs.id))
    assert rc == 2 and f"cannot read project {theirs.id}: 403 Forbidden" in err


def test_help_has_no_backup_dir_as_export_never_writes(capsys):
    with pytest.raises(SystemExit):
        main(["task", "export", "--help"])
    text = capsys.readouterr().out
    assert "--project" in text and "--backup-dir" not in text
