"""``autotrack task annotate`` / ``restore`` (the installed entry point) against the
CVAT-compatible test server (tests/cvat_server.py).

The server checks every request body against cvat-sdk's models of CVAT's OpenAPI schema and
serves real vtest.avi frames; nothing here talks to a live CVAT. The detector runs over the
whole 795-frame task once (module fixture); other cases use short frame ranges.
"""

from __future__ import annotations

import copy
import json
import re
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from autotrack.cvat.task.annotations import canonical, fingerprint, without_ids
from autotrack.cvat.task.backup import Manifest, load_backup
from autotrack.cvat.task.connection import (
    Credentials,
    CvatAuthError,
    connect,
    credentials_from,
)
from autotrack.cvat.task.labels import TaskLabel, plan_labels
from autotrack.cvat.task.frames import TaskFrames, load_target, select_frames
from autotrack.errors import InputError

from conftest import MODELS_DIR
from cvat_server import CvatTestServer, FrameStore

ALICE = "alice:alice-pass"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Run:
    rc: int
    out: str
    err: str


AUTOTRACK = Path(sys.executable).with_name("autotrack")  # the installed entry point


def run_tool(server: CvatTestServer, *args: str, auth: str | None = ALICE,
             backup_dir: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """``autotrack task annotate ARGS`` (or ``task restore`` when ARGS start with it) as a
    user runs it: the installed script in a process of its own."""
    command = ["task", "restore", *args[1:]] if args[:1] == ("restore",) else [
        "task", "annotate", *args, "-q"]
    command += ["--server-host", server.url]
    if auth is not None:
        command += ["--auth", auth]
    if backup_dir is not None:
        command += ["--backup-dir", str(backup_dir)]
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CVAT_ACCESS_TOKEN", "CVAT_USER", "CVAT_PASSWORD", "PASS")}
    done = subprocess.run([str(AUTOTRACK), *command], capture_output=True, text=True,
                          env={**environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=600)
    return Run(done.returncode, done.stdout, done.stderr)


def person_made(server: CvatTestServer, task: Any, first: int = 0) -> dict[str, Any]:
    """Annotations a person made: a box, a tag, a manual track, and an 'auto' track that some
    other tool uploaded (not in this tool's manifest, so never to be deleted)."""
    person = server.label_id(task, task.labels[0]["name"])
    box = {"type": "rectangle", "frame": first + 3, "label_id": person,
           "points": [10.0, 20.0, 60.0, 140.0], "source": "manual"}
    tag = {"frame": first + 1, "label_id": person, "source": "manual"}

    def track(source: str, x: float) -> dict[str, Any]:
        moved = [x + 30.0, 110.0, x + 70.0, 210.0]
        return {"frame": first, "label_id": person, "source": source, "shapes": [
            {"type": "rectangle", "frame": first, "points": [x, 100.0, x + 40.0, 200.0]},
            {"type": "rectangle", "frame": first + 20, "points": moved},
            {"type": "rectangle", "frame": first + 40, "points": moved, "outside": True},
        ]}

    data = {"shapes": [box], "tags": [tag],
            "tracks": [track("manual", 300.0), track("auto", 500.0)]}
    server.seed(task, data)
    return data


def visible_frames(track: dict[str, Any], last_frame: int) -> int:
    """Frames CVAT shows a track on, from its keyframes alone (what the server received)."""
    shapes = sorted(track["shapes"], key=lambda s: s["frame"])
    total = 0
    for shape, following in zip(shapes, [*shapes[1:], None], strict=True):
        if shape["outside"]:
            continue
        end = following["frame"] if following is not None else last_frame + 1
        total += end - shape["frame"]
    return total


def patch_bodies(server: CvatTestServer, task: Any, action: str) -> list[dict[str, Any]]:
    return [r.body for r in server.recorded(task=task, methods=("PATCH",))
            if r.query.get("action") == [action]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def frame_store(vtest_video: Path) -> FrameStore:
    return FrameStore.from_video(vtest_video)


@pytest.fixture(scope="module")
def server(frame_store: FrameStore):
    with CvatTestServer(frame_store) as app:
        yield app
        assert not app.errors, app.errors[0]
        unknown = app.unknown_requests()
        assert not unknown, [f"{r.method} {r.path}" for r in unknown]


@pytest.fixture(scope="module")
def full_run(server: CvatTestServer, tmp_path_factory: pytest.TempPathFactory):
    """The tool over all 795 frames of a task that already holds person-made annotations.

    The task has a label for every class YOLOX-Nano tracks in vtest.avi (people, and a car
    and a truck that are static false positives), so the upload is the README's
    ``autotrack annotate`` run, as tracks on a server.
    """
    task = server.add_task("vtest", ["person", "car", "truck"])
    person_made(server, task, first=100)
    before = server.stored(task)
    backups = tmp_path_factory.mktemp("backups")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        env.setenv("AUTOTRACK_OFFLINE", "1")
        run = run_tool(server, str(task.id), backup_dir=backups)
    assert run.rc == 0, run.err
    match = re.search(r"backup of the annotations before this upload: (\S+)", run.out)
    bodies = patch_bodies(server, task, "create")
    # read back as any cvat-sdk user would: the high-level API, type-checked models
    from cvat_sdk import make_client

    with make_client(server.url, credentials=("alice", "alice-pass")) as client:
        sdk_tracks = [t.to_dict() for t in client.tasks.retrieve(task.id).get_annotations().tracks]
    return SimpleNamespace(task=task, before=before, after=server.stored(task), run=run,
                           sdk_tracks=sdk_tracks,
                           backups=backups, backup=Path(match.group(1)) if match else None,
                           bodies=bodies, sent=[t for body in bodies for t in body["tracks"]])


def test_uploads_tracks_with_thinned_keyframes(full_run, server):
    task = full_run.task
    assert full_run.bodies and all(set(body) == {"tracks"} for body in full_run.bodies)
    tracks = full_run.sent  # tracks, never per-frame shapes
    assert len(tracks) >= 20
    labels = {name: server.label_id(task, name) for name in ("person", "car", "truck")}
    assert {t["label_id"] for t in tracks} == set(labels.values())
    assert {t["source"] for t in tracks} == {"auto"}
    keyframes = sum(1 for t in tracks for s in t["shapes"] if not s["outside"])
    shown = sum(visible_frames(t, task.size - 1) for t in tracks)
    assert keyframes <= 0.20 * shown, (keyframes, shown)
    # People alone too (walking, so they need more keyframes than the static car and truck
    # that would otherwise dilute the ratio).
    people = [t for t in tracks if t["label_id"] == labels["person"]]
    person_keyframes = sum(1 for t in people for s in t["shapes"] if not s["outside"])
    assert person_keyframes <= 0.20 * sum(visible_frames(t, task.size - 1) for t in people)
    summary = re.search(r"(\d+) tracks, (\d+) keyframes \(\+(\d+) outside markers\) for (\d+) "
                        r"tracked frames", full_run.run.out)
    assert summary, full_run.run.out
    assert [int(x) for x in summary.groups()] == [
        len(tracks), keyframes, sum(len(t["shapes"]) for t in tracks) - keyframes, shown]
    for track in tracks:
        frames = [s["frame"] for s in track["shapes"]]
        assert frames == sorted(frames) and track["frame"] == frames[0]
        assert all(0 <= f < task.size for f in frames)
    # frames came as chunks, one request per 36 frames, none one by one
    data = server.recorded(task=task, route="task_data")
    assert len(data) == -(-task.size // task.chunk_size)
    assert {r.query["type"][0] for r in data} == {"chunk"}
    assert all(r.query["quality"] == ["original"] for r in data)
    writes = server.recorded(task=task, methods=WRITES)
    assert {(r.method, r.query["action"][0]) for r in writes} == {("PATCH", "create")}
    assert "checked:" in full_run.run.out


def test_tracks_read_back_as_sent(full_run):
    before_ids = {t["id"] for t in full_run.before["tracks"]}
    new = [t for t in full_run.sdk_tracks if t["id"] not in before_ids]
    sent = full_run.sent
    assert len(new) == len(sent)
    for got, want in zip(sorted(new, key=lambda t: t["id"]), sent, strict=True):
        got = without_ids(got)
        assert got.pop("elements") == []
        assert got == want
    # what was there before is still there, ids included
    assert canonical({k: full_run.after[k] for k in ("tags", "shapes")}) == canonical(
        {k: full_run.before[k] for k in ("tags", "shapes")})
    kept = [t for t in full_run.after["tracks"] if t["id"] in before_ids]
    assert kept == full_run.before["tracks"]


def test_backup_restores_the_task_exactly(full_run, server):
    task = full_run.task
    assert full_run.backup is not None and full_run.backup.exists()
    assert full_run.backup.parent == full_run.backups
    name = full_run.backup.name
    assert name.startswith(f"127.0.0.1_{server.url.rsplit(':', 1)[1]}-task{task.id}-")
    backup = load_backup(full_run.backup)
    assert backup.annotations == full_run.before
    assert f"restore {full_run.backup}" in full_run.run.out

    run = run_tool(server, "restore", str(full_run.backup), backup_dir=full_run.backups)
    assert run.rc == 0, run.err
    assert "every job reads back as the backup holds it" in run.out
    # CVAT refuses ids in a PUT: the objects come back with new ids, content identical
    assert canonical(server.stored(task), ids=False) == canonical(full_run.before, ids=False)
    puts = server.recorded(task=task, methods=("PUT",))
    assert len(puts) == 1 and puts[0].status == 200 and puts[0].path.startswith("/api/jobs/")
    assert without_ids(puts[0].body) == puts[0].body
    # the restore saved what it replaced, so it can be undone in turn
    safety = [p for p in full_run.backups.glob("*.json") if p != full_run.backup
              and "created-tracks" not in p.name]
    assert len(safety) == 1
    assert canonical(load_backup(safety[0]).annotations) == canonical(full_run.after)


def test_dry_run_writes_nothing(server, tmp_path):
    task = server.add_task("dry", ["person"])
    person_made(server, task)
    before = server.stored(task)
    run = run_tool(server, str(task.id), "--dry-run", "--start", "0", "--stop", "59",
                   backup_dir=tmp_path / "backups")
    assert run.rc == 0, run.err
    assert server.recorded(task=task, methods=WRITES) == []
    assert server.stored(task) == before
    assert not (tmp_path / "backups").exists()
    counts = re.search(r"would upload: (\d+) tracks, (\d+) keyframes \(\+(\d+) outside markers\) "
                       r"for (\d+) tracked frames \(([\d.]+)%\) over 60 frames", run.out)
    assert counts, run.out
    assert int(counts.group(1)) > 0 and int(counts.group(2)) > 0
    assert re.search(r"person -> label 'person' \(id \d+\): \d+ tracks, \d+ keyframes", run.out)
    assert "nothing was written to the server" in run.out


def test_frames_fetched_ahead_upload_the_sequential_tracks(server, tmp_path):
    """The default pipeline (chunks downloaded and frames detected ahead of the tracker)
    uploads exactly what the one-frame-at-a-time loop (--sequential) uploads (each task has
    label ids of its own)."""
    uploads = []
    for name, extra in (("ahead", ()), ("sequential", ("--sequential",))):
        task = server.add_task(name, ["person"])
        run = run_tool(server, str(task.id), "--start", "0", "--stop", "99", *extra,
                       backup_dir=tmp_path / name)
        assert run.rc == 0, run.err
        tracks = [{**without_ids(t), "label_id": None} for t in server.stored(task)["tracks"]]
        uploads.append(sorted(tracks, key=lambda t: (t["frame"], str(t["shapes"][0]["points"]))))
    assert uploads[0] and uploads[0] == uploads[1]


def test_replace_removes_only_this_tools_tracks(server, tmp_path):
    task = server.add_task("replace", [{"name": "person", "attributes": [
        {"name": "carrying", "mutable": True, "values": ["nothing", "bag"]},
        {"name": "kind", "mutable": False, "values": ["adult", "child"]}]}])
    seeded = person_made(server, task)
    backups = tmp_path / "backups"
    first = run_tool(server, str(task.id), "--stop", "59", backup_dir=backups)
    assert first.rc == 0, first.err
    seeded_ids = {t["id"] for t in server.stored_job(task.jobs[0])["tracks"]
                  if t["source"] == "manual" or t["shapes"][0]["points"][0] in (300.0, 500.0)}
    assert len(seeded_ids) == len(seeded["tracks"])
    created = sorted(t["id"] for t in server.stored(task)["tracks"] if t["id"] not in seeded_ids)
    assert len(created) >= 3
    manifest = Manifest.load(backups, server.url, task.id)
    assert sorted(manifest.tracks) == sorted(created)

    # a person edits two of the tool's tracks: moves a keyframe, sets an attribute
    stored = {t["id"]: t for t in task.jobs[0].annotations["tracks"]}
    stored[created[0]]["shapes"][0]["points"][0] += 7.0
    spec = task.labels[0]["attributes"][0]["id"]
    stored[created[1]]["shapes"][0]["attributes"] = [{"spec_id": spec, "value": "bag"}]
    others = [copy.deepcopy(t) for t in server.stored(task)["tracks"] if t["id"] not in created]
    others_shapes = server.stored(task)["shapes"]

    creates_before = len(patch_bodies(server, task, "create"))
    second = run_tool(server, str(task.id), "--stop", "59", "--replace", backup_dir=backups)
    assert second.rc == 0, second.err
    deleted = [t["id"] for body in patch_bodies(server, task, "delete") for t in body["tracks"]]
    assert sorted(deleted) == sorted(created[2:])
    assert "2 edited since (kept)" in second.out
    now = server.stored(task)
    ids = {t["id"] for t in now["tracks"]}
    assert set(created[:2]) <= ids and not set(created[2:]) & ids
    assert sorted((t for t in now["tracks"] if t["id"] in {o["id"] for o in others}),
                  key=lambda t: t["id"]) == sorted(others, key=lambda t: t["id"])
    assert now["shapes"] == others_shapes and len(now["tags"]) == 1
    new_ids = ids - set(created) - {o["id"] for o in others}
    assert len(new_ids) == sum(len(body["tracks"])
                               for body in patch_bodies(server, task, "create")[creates_before:])
    manifest = Manifest.load(backups, server.url, task.id)
    assert set(manifest.tracks) == new_ids | set(created[:2])

    # tracks of other frames are not touched by a replace elsewhere
    third = run_tool(server, str(task.id), "--start", "300", "--stop", "329", "--replace",
                     "--dry-run", backup_dir=backups)
    assert third.rc == 0, third.err
    assert re.search(r"would remove 0 objects .*; 2 edited since \(kept\), \d+ outside these "
                     r"frames \(kept\)", third.out), third.out
    # nor are tracks that reach past the frames being recomputed
    fourth = run_tool(server, str(task.id), "--start", "30", "--stop", "59", "--replace",
                      "--dry-run", backup_dir=backups)
    assert fourth.rc == 0, fourth.err
    removable = int(re.search(r"would remove (\d+) objects", fourth.out).group(1))
    crossing = int(re.search(r"(\d+) reaching past these frames", fourth.out).group(1))
    spans = [manifest.tracks[i]["frames"] for i in new_ids]
    assert removable == sum(1 for a, b in spans if a >= 30 and b <= 59)
    assert crossing == sum(1 for a, b in spans if a < 30 <= b)
    assert all(b <= 59 for a, b in spans)


def test_label_map_and_unmatched_classes(server, tmp_path):
    task = server.add_task("labels", ["Pedestrian", "vehicle", {"name": "person-points",
                                                                "type": "points"}])
    run = run_tool(server, str(task.id), "--stop", "29", "--label-map", "person=pedestrian",
                   backup_dir=tmp_path)
    assert run.rc == 0, run.err
    body = patch_bodies(server, task, "create")[0]
    assert {t["label_id"] for t in body["tracks"]} == {server.label_id(task, "Pedestrian")}
    # the detector also sees a car and a truck (static false positives in vtest): reported,
    # never uploaded, never guessed onto 'vehicle'
    line = next(x for x in run.out.splitlines() if x.startswith("not uploaded"))
    assert "car (in 30 frames)" in line and "truck (in 30 frames)" in line
    assert "--label-map CLASS=LABEL" in line


def test_label_plan_rules():
    names = ("person", "bicycle", "car")
    labels = [TaskLabel(1, "PERSON"), TaskLabel(2, "Auto"), TaskLabel(3, "bike", "skeleton")]
    plan = plan_labels(names, labels)
    assert plan.label_ids() == {"person": 1}  # case-insensitive by name
    assert plan.unmatched_classes == ("bicycle", "car")
    assert [x.id for x in plan.unused_labels] == [2]
    plan = plan_labels(names, labels, label_map="car=auto")
    assert plan.label_ids() == {"person": 1, "car": 2}
    with pytest.raises(InputError, match="type 'skeleton'"):
        plan_labels(names, labels, label_map="bicycle=bike")
    with pytest.raises(InputError, match="has no label 'truck'"):
        plan_labels(names, labels, label_map="car=truck")
    with pytest.raises(InputError, match="unknown class name 'cat'"):
        plan_labels(names, labels, label_map="cat=auto")
    with pytest.raises(InputError, match="--classes car"):
        plan_labels(names, labels, classes=["person", "car"])
    with pytest.raises(InputError, match="several labels"):
        plan_labels(names, [TaskLabel(1, "Person"), TaskLabel(2, "PERSON")], classes=["person"])
    with pytest.raises(InputError, match="no detector class matches"):
        plan_labels(names, [TaskLabel(5, "tree")])
    with pytest.raises(InputError, match="bad --label-map entry"):
        plan_labels(names, labels, label_map="person")


def test_job_target_uploads_to_the_job(server, tmp_path):
    task = server.add_task("jobs", ["person"], size=60, frame_offset=200,
                           jobs=[(0, 29), (30, 59)])
    job = task.jobs[1]
    run = run_tool(server, "--job", str(job.id), backup_dir=tmp_path)
    assert run.rc == 0, run.err
    writes = server.recorded(task=task, methods=WRITES)
    assert [(r.method, r.path) for r in writes] == [
        ("PATCH", f"/api/jobs/{job.id}/annotations/")]
    frames = [s["frame"] for t in writes[0].body["tracks"] for s in t["shapes"]]
    assert frames and min(frames) >= 30 and max(frames) <= 59
    assert list(tmp_path.glob(f"*-job{job.id}-*.json"))


def test_video_chunks_and_per_frame_fallback(server, frame_store):
    task = server.add_task("mp4", ["person"], size=40, chunk_size=16, chunk_type="video",
                           frame_offset=50, broken_chunks={1})
    session = connect(server.url, Credentials(token="alice-token"))
    warnings = []
    try:
        target = load_target(session, task_id=task.id)
        frames = TaskFrames(session, target, range(5, 40), warn=warnings.append)
        got = list(frames)
    finally:
        session.close()
    assert [f for f, _ in got] == list(range(5, 40))
    for frame, image in got:
        want = frame_store.image(50 + frame).astype(np.int16)
        error = np.abs(image.astype(np.int16) - want).mean()
        if 16 <= frame < 32:
            assert error == 0  # fetched one by one: the very JPEG
        else:
            assert error < 6  # decoded from the mp4 chunk
    assert frames.fallback_frames == 16 and len(warnings) == 1
    requests = server.recorded(task=task, route="task_data")
    assert sorted(int(r.query["number"][0]) for r in requests if r.query["type"] == ["frame"]) == \
        list(range(16, 32))
    assert sorted(int(r.query["number"][0]) for r in requests if r.query["type"] == ["chunk"]) == \
        [0, 1, 2]


def test_frame_selection_skips_deleted_frames(server):
    task = server.add_task("gaps", ["person"], size=20, deleted_frames=[3, 4, 12])
    session = connect(server.url, Credentials(user="alice", password="alice-pass"))
    try:
        target = load_target(session, task_id=task.id)
    finally:
        session.close()
    assert target.deleted_frames == {3, 4, 12}
    assert select_frames(target, None, None) == [f for f in range(20) if f not in (3, 4, 12)]
    assert select_frames(target, 2, 5) == [2, 5]
    with pytest.raises(InputError, match="all deleted"):
        select_frames(target, 3, 4)
    with pytest.raises(InputError, match="reach outside"):
        select_frames(target, 0, 20)


def test_server_refuses_bodies_outside_the_schema(server):
    """The test server is strict: what passes it passed cvat-sdk's model of CVAT's schema."""
    import urllib.error
    import urllib.request

    task = server.add_task("strict", ["person"], size=10)
    good = {"frame": 0, "label_id": server.label_id(task, "person"), "source": "auto",
            "shapes": [{"type": "rectangle", "frame": 0, "points": [1.0, 2.0, 3.0, 4.0]}]}

    def patch(track: dict[str, Any]) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{server.url}/api/tasks/{task.id}/annotations?action=create", method="PATCH",
            data=json.dumps({"tracks": [track]}).encode(),
            headers={"Authorization": "Bearer alice-token",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    bad = [({**good, "frame": "0"}, "Invalid type for variable 'frame'"),
           ({**good, "colour": "red"}, "unknown field 'colour'"),
           ({**good, "source": "robot"}, "not a valid choice"),
           ({**good, "label_id": 999}, "label_id `999` is invalid"),
           ({**good, "shapes": [{**good["shapes"][0], "type": "blob"}]}, "must be one of"),
           ({**good, "shapes": [{**good["shapes"][0], "frame": 10}], "frame": 10},
            "outside frames 0-9"),
           ({k: v for k, v in good.items() if k != "label_id"}, "label_id")]
    for track, message in bad:
        status, text = patch(track)
        assert status == 400 and message in text, (track, status, text)
    assert patch(good)[0] == 200
    assert len(server.stored(task)["tracks"]) == 1


def one_line_error(run: Run) -> str:
    assert run.rc == 2, (run.rc, run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("autotrack: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def error_task(server):
    return server.add_task("errors", ["person"], size=30)


def test_error_nothing_listening(tmp_path):
    fake = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    line = one_line_error(run_tool(fake, "1", backup_dir=tmp_path))
    assert "cannot reach" in line and "connection refused" in line


def test_error_bad_url(server, tmp_path):
    line = one_line_error(run_tool(SimpleNamespace(url="ftp://127.0.0.1"), "1"))
    assert "bad server URL" in line
    with CvatTestServer(server.frames) as other:  # its unknown-endpoint log is checked here
        line = one_line_error(run_tool(SimpleNamespace(url=other.url + "/nope"), "1"))
        assert "does not look like a CVAT server" in line
        assert [(r.path, r.status) for r in other.unknown_requests()] == [
            ("/nope/api/server/about", 404)]


def test_error_bad_credentials(server, error_task):
    line = one_line_error(run_tool(server, str(error_task.id), auth="alice:wrong"))
    assert "wrong user name or password" in line and "alice" in line
    line = one_line_error(run_tool(server, str(error_task.id), auth=None,
                                        env={"CVAT_ACCESS_TOKEN": "nope"}))
    assert "401" in line
    line = one_line_error(run_tool(server, str(error_task.id), auth="bob:bob-pass"))
    assert "403" in line and "bob" in line


def test_error_missing_task(server):
    line = one_line_error(run_tool(server, "9999"))
    assert "task 9999" in line and "not found" in line


def test_error_not_a_video_task(server, tmp_path):
    images = server.add_task("photos", ["person"], size=20, mode="annotation")
    line = one_line_error(run_tool(server, str(images.id)))
    assert "not a video task" in line and "--image-sequence" in line
    cloud = server.add_task("lidar", ["person"], size=20, dimension="3d")
    assert "3D task" in one_line_error(run_tool(server, str(cloud.id)))
    ok = run_tool(server, str(images.id), "--image-sequence", "--dry-run", "--stop", "4")
    assert ok.rc == 0, ok.err
    assert server.recorded(task=images, methods=WRITES) == []


def test_error_bad_options(server, error_task, tmp_path):
    assert "reach outside" in one_line_error(run_tool(server, str(error_task.id), "--stop", "30"))
    line = one_line_error(run_tool(server, str(error_task.id), "--classes", "person,car"))
    assert "--classes car" in line
    other = server.add_task("other", ["person"], size=10)
    backup = tmp_path / "b.json"
    backup.write_text(json.dumps({"format": "autotrack-cvat-annotations-backup", "version": 1,
                                  "server": "http://cvat.example:8080", "resource": "task",
                                  "id": other.id, "annotations": {}}))
    line = one_line_error(run_tool(server, "restore", str(backup)))
    assert "was saved from http://cvat.example:8080" in line
    assert "no such backup" in one_line_error(run_tool(server, "restore", str(tmp_path / "x")))
    assert server.recorded(task=error_task, methods=WRITES) == []


def test_credentials_from_environment():
    assert credentials_from(None, None, {"CVAT_ACCESS_TOKEN": "t"}) == Credentials(token="t")
    assert credentials_from(None, None, {"CVAT_USER": "u", "CVAT_PASSWORD": "p"}) == \
        Credentials(user="u", password="p")
    assert credentials_from("u:p:q", None, {}) == Credentials(user="u", password="p:q")
    assert credentials_from("u", None, {}, prompt=lambda _: "typed") == \
        Credentials(user="u", password="typed")
    with pytest.raises(CvatAuthError, match="no password"):
        credentials_from("u", None, {})  # pytest's stdin is no terminal: no prompt, an error
    with pytest.raises(CvatAuthError, match="no credentials"):
        credentials_from(None, None, {})


def test_fingerprint_ignores_filled_in_defaults():
    track = {"label_id": 1, "frame": 0, "source": "auto", "group": 0, "attributes": [],
             "shapes": [{"type": "rectangle", "frame": 0, "points": [1.0, 2.0, 3.0, 4.0],
                         "outside": False, "occluded": False, "z_order": 0, "rotation": 0.0,
                         "attributes": []}]}
    read = copy.deepcopy(track)
    read["attributes"] = [{"spec_id": 7, "value": "adult"}]
    read["shapes"][0]["attributes"] = [{"spec_id": 8, "value": "nothing"}]
    defaults = {7: "adult", 8: "nothing"}
    assert fingerprint(read, defaults) == fingerprint(track, defaults)
    read["shapes"][0]["attributes"] = [{"spec_id": 8, "value": "bag"}]
    assert fingerprint(read, defaults) != fingerprint(track, defaults)


def test_restore_reads_a_version_1_backup(server, tmp_path):
    """A backup written before job-by-job backups (the task-level read alone) is put back
    with one task-level PUT, without ids (CVAT cuts it into the jobs itself)."""
    from autotrack.cvat.task.backup import BACKUP_FORMAT

    task = server.add_task("v1-backup", ["person"], size=60)
    person_made(server, task)
    before = server.stored(task)
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "format": BACKUP_FORMAT, "version": 1, "server": server.url, "resource": "task",
        "id": task.id, "task_id": task.id, "saved_at": "2026-11-05T10:15:00Z",
        "annotations": before}))
    person = server.label_id(task, "person")
    server.seed(task, {"shapes": [{"type": "rectangle", "frame": 7, "label_id": person,
                                   "points": [1.0, 2.0, 30.0, 40.0], "source": "manual"}]})
    run = run_tool(server, "restore", str(path), backup_dir=tmp_path)
    assert run.rc == 0, run.err
    assert canonical(server.stored(task), ids=False) == canonical(before, ids=False)
    put = server.recorded(task=task, methods=("PUT",))[-1]
    assert put.path.rstrip("/") == f"/api/tasks/{task.id}/annotations"
    assert without_ids(put.body) == put.body
