"""The CVAT model in tests/cvat_server.py, checked over HTTP (cvat-sdk and urllib), not through
autotrack: job ranges, per-job storage, how a task-level write is cut into jobs and a
task-level read merged back (as CVAT's dataset_manager does), the id rules, job states.

Frames are 800 tiny synthetic JPEGs, so nothing here decodes a video.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from typing import Any

import cv2
import numpy as np
import pytest

from cvat_server import ID_ABSENT, ID_REQUIRED, CvatTestServer, FrameStore, segments

FRAMES = 795
BEARER = {"Authorization": "Bearer alice-token", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def frames() -> FrameStore:
    jpegs = []
    for i in range(800):
        image = np.full((48, 64, 3), i % 256, np.uint8)
        ok, buffer = cv2.imencode(".jpg", image)
        assert ok
        jpegs.append(buffer.tobytes())
    return FrameStore(jpegs, 64, 48)


@pytest.fixture(scope="module")
def server(frames: FrameStore):
    with CvatTestServer(frames) as app:
        yield app
        assert not app.errors, app.errors[0]
        assert not app.unknown_requests()


def call(server: CvatTestServer, method: str, path: str, body: Any = None,
         user: str = "alice-token") -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={**BEARER, "Authorization": f"Bearer {user}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode()


def sdk(server: CvatTestServer):
    from cvat_sdk import make_client

    return make_client(server.url, credentials=("alice", "alice-pass"))


def box(frame: int, points: list[float], outside: bool = False) -> dict[str, Any]:
    return {"type": "rectangle", "frame": frame, "points": points, "outside": outside}


def moving_track(label: int) -> dict[str, Any]:
    """A person crossing three jobs of 300 frames: keyframes 10, 250, 400, outside from 700."""
    return {"frame": 10, "label_id": label, "source": "auto", "shapes": [
        box(10, [0.0, 0.0, 40.0, 80.0]),
        box(250, [240.0, 0.0, 280.0, 80.0]),
        box(400, [390.0, 30.0, 430.0, 110.0]),
        box(700, [690.0, 30.0, 730.0, 110.0], outside=True)]}


def visible_boxes(track: dict[str, Any], end: int) -> dict[int, np.ndarray]:
    """Frame -> box where the track is visible, by linear interpolation between keyframes
    (written here from scratch, not taken from the server)."""
    keys = sorted(track["shapes"], key=lambda s: s["frame"])
    out = {}
    for key, following in zip(keys, [*keys[1:], None], strict=True):
        if key["outside"]:
            continue
        stop = following["frame"] if following else end
        for frame in range(key["frame"], stop):
            if following is None:
                out[frame] = np.array(key["points"])
            else:
                t = (frame - key["frame"]) / (following["frame"] - key["frame"])
                out[frame] = np.array(key["points"]) + t * (
                    np.array(following["points"]) - np.array(key["points"]))
    return out


def frames_of(track: dict[str, Any]) -> list[tuple[int, bool]]:
    return [(s["frame"], s["outside"]) for s in track["shapes"]]


def assert_same_boxes(got: dict[int, np.ndarray], want: dict[int, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for frame, points in want.items():
        assert np.allclose(got[frame], points, atol=1e-6), (frame, got[frame], points)


# --- jobs ---------------------------------------------------------------------------------

def cvat_ranges(size: int, segment_size: int, overlap: int) -> list[tuple[int, int]]:
    """engine/task.py _get_task_segment_data, restated: a segment starts every
    segment_size - overlap frames below size - overlap."""
    step = segment_size - overlap
    return [(s, min(s + segment_size - 1, size - 1)) for s in range(0, size - overlap, step)]


@pytest.mark.parametrize(("overlap", "want"), [
    (0, [(0, 299), (300, 599), (600, 794)]),
    (5, [(0, 299), (295, 594), (590, 794)]),
])
def test_job_ranges_follow_cvat(server, overlap, want):
    assert cvat_ranges(FRAMES, 300, overlap) == want
    task = server.add_task("ranges", ["person"], size=FRAMES, segment_size=300, overlap=overlap)
    assert [(j.start, j.stop) for j in task.jobs] == want
    with sdk(server) as client:
        remote = client.tasks.retrieve(task.id)
        assert (remote.segment_size, remote.overlap) == (300, overlap)
        jobs = remote.get_jobs()
    assert sorted((j.start_frame, j.stop_frame) for j in jobs) == want
    assert [j.id for j in jobs] == sorted((j.id for j in task.jobs), reverse=True)  # -id


def test_default_segments():
    # no segment size: one job; overlap defaults to 5 for video, 0 for images, <= size // 2
    assert segments(FRAMES) == ([(0, 794)], FRAMES, 5)
    assert segments(FRAMES, mode="annotation") == ([(0, 794)], FRAMES, 0)
    assert segments(FRAMES, 4) == (cvat_ranges(FRAMES, 4, 2), 4, 2)
    assert segments(10, 300, 0) == ([(0, 9)], 10, 0)


# --- a task-level write cut into jobs, a task-level read merged -----------------------------

PIECES = {
    5: [[(10, False), (250, False), (299, False)],
        [(295, False), (400, False), (594, False)],
        [(590, False), (700, True)]],
    0: [[(10, False), (250, False), (299, False)],
        [(300, False), (400, False), (599, False)],
        [(600, False), (700, True)]],
}


@pytest.mark.parametrize("overlap", [5, 0])
def test_track_across_three_jobs(server, overlap):
    from cvat_sdk import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    task = server.add_task("across", ["person"], size=FRAMES, segment_size=300, overlap=overlap)
    label = server.label_id(task, "person")
    sent = moving_track(label)
    with sdk(server) as client:
        remote = client.tasks.retrieve(task.id)
        remote.update_annotations(models.PatchedLabeledDataRequest(
            tracks=[models.LabeledTrackRequest(**copy.deepcopy(sent))]),
            action=AnnotationUpdateAction.CREATE)
        task_tracks = [t.to_dict() for t in remote.get_annotations().tracks]
        job_tracks = [[t.to_dict() for t in client.jobs.retrieve(j.id).get_annotations().tracks]
                      for j in task.jobs]
    want = visible_boxes(sent, FRAMES)

    # each job stores its piece, with the keyframes CVAT's _slice_track adds at its ends
    assert [[frames_of(t) for t in tracks] for tracks in job_tracks] == \
        [[piece] for piece in PIECES[overlap]]
    for job, (piece,) in zip(task.jobs, job_tracks, strict=True):
        inside = {f: b for f, b in want.items() if job.start <= f <= job.stop}
        got = {f: b for f, b in visible_boxes(piece, job.stop + 1).items() if f >= job.start}
        assert_same_boxes(got, inside)
    piece_ids = [tracks[0]["id"] for tracks in job_tracks]
    assert len(set(piece_ids)) == 3

    if overlap:
        # one track again: the pieces matched on the overlap frames, the first piece's id
        (track,) = task_tracks
        assert track["id"] == piece_ids[0]
        assert frames_of(track) == sorted({f for piece in PIECES[5] for f in piece})
        assert_same_boxes(visible_boxes(track, FRAMES), want)
    else:
        # nothing merged: three tracks, each closed by an outside keyframe at the next start
        assert [t["id"] for t in task_tracks] == piece_ids
        assert [frames_of(t) for t in task_tracks] == [
            PIECES[0][0] + [(300, True)], PIECES[0][1] + [(600, True)], PIECES[0][2]]
        seen: dict[int, np.ndarray] = {}
        for track in task_tracks:
            boxes = visible_boxes(track, FRAMES)
            assert not set(boxes) & set(seen)
            seen.update(boxes)
        assert_same_boxes(seen, want)


def test_create_answer_is_the_merged_job_answers(server):
    task = server.add_task("answer", ["person"], size=FRAMES, segment_size=300, overlap=5)
    track = moving_track(server.label_id(task, "person"))
    status, answer = call(server, "PATCH", f"/api/tasks/{task.id}/annotations?action=create",
                          {"tracks": [track]})
    assert status == 200
    (created,) = answer["tracks"]
    assert frames_of(created) == frames_of(server.stored(task)["tracks"][0])
    assert created["id"] == task.jobs[0].annotations["tracks"][0]["id"]


def test_shapes_and_tags_on_shared_frames(server):
    task = server.add_task("shared", ["person"], size=FRAMES, segment_size=300, overlap=5)
    label = server.label_id(task, "person")
    body = {"shapes": [{**box(297, [1.0, 2.0, 30.0, 40.0]), "label_id": label},
                       {**box(100, [1.0, 2.0, 30.0, 40.0]), "label_id": label}],
            "tags": [{"frame": 296, "label_id": label}]}
    assert call(server, "PATCH", f"/api/tasks/{task.id}/annotations?action=create", body)[0] \
        == 200
    first, second, _ = task.jobs
    # a frame two jobs share: one row in each job
    assert [s["frame"] for s in first.annotations["shapes"]] == [297, 100]
    assert [s["frame"] for s in second.annotations["shapes"]] == [297]
    assert len(first.annotations["tags"]) == len(second.annotations["tags"]) == 1
    # the task read keeps the first job's copy (IoU 1 >= 0.75, same label)
    stored = server.stored(task)
    assert sorted(s["id"] for s in stored["shapes"]) == sorted(
        s["id"] for s in first.annotations["shapes"])
    assert [t["id"] for t in stored["tags"]] == [first.annotations["tags"][0]["id"]]

    # delete by the id the task read shows: only the first job's row goes; the second job's
    # copy, another row, shows up in its place (CVAT's behaviour)
    shape = next(s for s in stored["shapes"] if s["frame"] == 297)
    assert call(server, "PATCH", f"/api/tasks/{task.id}/annotations?action=delete",
                {"shapes": [shape]})[0] == 200
    after = [s for s in server.stored(task)["shapes"] if s["frame"] == 297]
    assert [s["id"] for s in after] == [second.annotations["shapes"][0]["id"]]


# --- ids ----------------------------------------------------------------------------------

def test_put_with_ids_is_refused(server):
    task = server.add_task("put-ids", ["person"], size=30)
    label = server.label_id(task, "person")
    track = {"frame": 0, "label_id": label, "shapes": [box(0, [1.0, 2.0, 3.0, 4.0])]}
    status, body = call(server, "PUT", f"/api/tasks/{task.id}/annotations",
                        {"tracks": [track, {**track, "id": 7}]})
    assert status == 400 and body == {"tracks": [{}, {"id": [ID_ABSENT]}]}
    with_shape_id = {**track, "shapes": [{**track["shapes"][0], "id": 3}]}
    status, body = call(server, "PUT", f"/api/jobs/{task.jobs[0].id}/annotations",
                        {"tracks": [with_shape_id]})
    assert status == 400 and body == {"tracks": [{"shapes": [{"id": [ID_ABSENT]}]}]}
    assert server.stored(task)["tracks"] == []
    # without ids a PUT replaces everything
    assert call(server, "PUT", f"/api/tasks/{task.id}/annotations", {"tracks": [track]})[0] \
        == 200
    assert len(server.stored(task)["tracks"]) == 1


def test_patch_ids_per_action(server):
    task = server.add_task("patch-ids", ["person"], size=30)
    label = server.label_id(task, "person")
    path = f"/api/tasks/{task.id}/annotations"
    tag = {"frame": 1, "label_id": label}
    status, body = call(server, "PATCH", path + "?action=create", {"tags": [{**tag, "id": 1}]})
    assert status == 400 and body == {"tags": [{"id": [ID_ABSENT]}]}
    status, body = call(server, "PATCH", path + "?action=delete", {"tags": [tag]})
    assert status == 400 and body == {"tags": [{"id": [ID_REQUIRED]}]}
    status, body = call(server, "PATCH", path + "?action=merge", {"tags": [tag]})
    assert status == 400 and "Please specify a correct 'action'" in str(body)
    # update without an id creates the object (kept by CVAT for compatibility)
    status, body = call(server, "PATCH", path + "?action=update", {"tags": [tag]})
    assert status == 200 and body["tags"][0]["id"] is not None
    assert [t["frame"] for t in server.stored(task)["tags"]] == [1]


def test_update_of_a_track_that_spans_jobs_is_a_duplicate_key(server):
    task = server.add_task("update", ["person"], size=FRAMES, segment_size=300, overlap=5)
    label = server.label_id(task, "person")
    path = f"/api/tasks/{task.id}/annotations"
    short = {"frame": 20, "label_id": label, "shapes": [
        box(20, [0.0, 0.0, 9.0, 9.0]), box(40, [5.0, 0.0, 14.0, 9.0], outside=True)]}
    assert call(server, "PATCH", path + "?action=create",
                {"tracks": [moving_track(label), short]})[0] == 200
    before = copy.deepcopy([j.annotations for j in task.jobs])
    spanning, inside = sorted(server.stored(task)["tracks"], key=lambda t: t["frame"])
    spanning["shapes"][0]["points"][0] += 1.0
    status, body = call(server, "PATCH", path + "?action=update", {"tracks": [spanning]})
    assert status == 400 and "duplicate key value violates unique constraint" in body
    assert [j.annotations for j in task.jobs] == before  # rolled back
    # a track inside one job updates in place, keeping its id
    inside["shapes"][0]["points"][0] += 1.0
    status, body = call(server, "PATCH", path + "?action=update", {"tracks": [inside]})
    assert status == 200
    now = next(t for t in server.stored(task)["tracks"] if t["id"] == inside["id"])
    assert now["shapes"][0]["points"][0] == 1.0


# --- task-level delete, job-level writes -------------------------------------------------

@pytest.mark.parametrize("overlap", [0, 5])
def test_task_level_delete_by_id(server, overlap):
    task = server.add_task("delete", ["person"], size=FRAMES, segment_size=300, overlap=overlap)
    label = server.label_id(task, "person")
    status, _ = call(server, "PATCH", f"/api/tasks/{task.id}/annotations?action=create",
                     {"tracks": [moving_track(label)]})
    assert status == 200
    read = server.stored(task)["tracks"]
    with sdk(server) as client:
        client.tasks.retrieve(task.id).remove_annotations(ids=[read[0]["id"]])
    left = server.stored(task)["tracks"]
    if overlap == 0:
        # the three pieces are three tracks: the one deleted is gone from its job only
        assert [t["id"] for t in left] == [t["id"] for t in read[1:]]
        assert task.jobs[0].annotations["tracks"] == []
        with sdk(server) as client:
            client.tasks.retrieve(task.id).remove_annotations(ids=[t["id"] for t in left])
        assert server.stored(task)["tracks"] == []
    else:
        # one merged track, but its id is the first job's row: the later pieces (rows with
        # other ids) stay and read back as one track from the second job on
        assert task.jobs[0].annotations["tracks"] == []
        (track,) = left
        assert track["id"] == task.jobs[1].annotations["tracks"][0]["id"]
        assert track["frame"] == 295


def test_job_level_write_touches_only_that_job(server):
    task = server.add_task("job-write", ["person"], size=FRAMES, segment_size=300, overlap=0)
    label = server.label_id(task, "person")
    first, second, third = task.jobs
    for job in task.jobs:
        server.seed(task, {"tags": [{"frame": job.start + 1, "label_id": label}]}, job=job)
    untouched = copy.deepcopy([first.annotations, third.annotations])
    path = f"/api/jobs/{second.id}/annotations"
    status, body = call(server, "PUT", path, {"shapes": [
        {**box(350, [1.0, 1.0, 9.0, 9.0]), "label_id": label}]})
    assert status == 200 and [s["frame"] for s in body["shapes"]] == [350]
    assert second.annotations["tags"] == [] and len(second.annotations["shapes"]) == 1
    assert [first.annotations, third.annotations] == untouched
    assert server.stored_job(second)["shapes"][0]["frame"] == 350
    # frames outside the job: CVAT stores them in the job; the strict server refuses
    status, body = call(server, "PATCH", path + "?action=create",
                        {"tags": [{"frame": 10, "label_id": label}]})
    assert status == 400 and "outside frames 300-599 of this job" in str(body)
    # a job-level delete of another job's id deletes nothing
    other = first.annotations["tags"][0]
    assert call(server, "PATCH", path + "?action=delete", {"tags": [other]})[0] == 200
    assert first.annotations["tags"] == untouched[0]["tags"]


def test_lenient_server_does_what_cvat_does(frames):
    with CvatTestServer(frames, strict=False) as lenient:
        task = lenient.add_task("lenient", ["person"], size=60, jobs=[(0, 29), (30, 59)])
        label = lenient.label_id(task, "person")
        # a job-level write keeps frames outside the job, in that job
        status, _ = call(lenient, "PATCH", f"/api/jobs/{task.jobs[0].id}/annotations"
                         "?action=create", {"tags": [{"frame": 45, "label_id": label}]})
        assert status == 200 and task.jobs[0].annotations["tags"][0]["frame"] == 45
        # a task-level write drops what no job holds
        status, body = call(lenient, "PATCH", f"/api/tasks/{task.id}/annotations"
                            "?action=create", {"tags": [{"frame": 75, "label_id": label}]})
        assert status == 200 and body["tags"] == []
        # a track without an outside end is visible to the end: each later job gets a piece
        track = {"frame": 5, "label_id": label, "shapes": [box(5, [1.0, 1.0, 5.0, 5.0])]}
        status, body = call(lenient, "PATCH", f"/api/tasks/{task.id}/annotations"
                            "?action=create", {"tracks": [track]})
        assert status == 200
        assert [frames_of(t) for t in lenient.stored(task)["tracks"]] == [
            [(5, False), (30, True)], [(30, False)]]
        # at job level, a track frame before its first shape gets an outside shape there
        status, body = call(lenient, "PATCH", f"/api/jobs/{task.jobs[1].id}/annotations"
                            "?action=create", {"tracks": [{**track, "frame": 33, "shapes": [
                                box(40, [1.0, 1.0, 5.0, 5.0])]}]})
        assert status == 200 and frames_of(body["tracks"][0]) == [(40, False), (33, True)]
        assert frames_of(lenient.stored_job(task.jobs[1])["tracks"][-1]) == [
            (33, True), (40, False)]
        assert not lenient.errors


def test_labels_and_attributes_are_checked_per_kind(server):
    task = server.add_task("attrs", [{"name": "person", "attributes": [
        {"name": "pose", "mutable": True, "values": ["up", "down"]},
        {"name": "kind", "mutable": False, "values": ["adult", "child"]}]}], size=30)
    label = server.label_id(task, "person")
    pose, kind = (a["id"] for a in task.labels[0]["attributes"])
    path = f"/api/tasks/{task.id}/annotations?action=create"

    def track(track_attrs, shape_attrs):
        return {"tracks": [{"frame": 0, "label_id": label, "attributes": track_attrs,
                            "shapes": [{**box(0, [1.0, 1.0, 5.0, 5.0]),
                                        "attributes": shape_attrs}]}]}

    status, body = call(server, "PATCH", path, track([{"spec_id": pose, "value": "up"}], []))
    assert status == 400 and body == [f"spec_id `{pose}` is invalid"]
    status, body = call(server, "PATCH", path, track([], [{"spec_id": kind, "value": "adult"}]))
    assert status == 400 and body == [f"spec_id `{kind}` is invalid"]
    status, body = call(server, "PATCH", path, {"tags": [{"frame": 0, "label_id": 999}]})
    assert status == 400 and body == ["label_id `999` is invalid"]
    assert call(server, "PATCH", path, track([{"spec_id": kind, "value": "child"}],
                                             [{"spec_id": pose, "value": "down"}]))[0] == 200
    (stored,) = server.stored(task)["tracks"]
    assert stored["attributes"] == [{"spec_id": kind, "value": "child"}]
    assert stored["shapes"][0]["attributes"] == [{"spec_id": pose, "value": "down"}]


def test_strict_refusals(server):
    task = server.add_task("strict", ["person"], size=30)
    label = server.label_id(task, "person")
    path = f"/api/tasks/{task.id}/annotations?action=create"
    two_on_one_frame = {"frame": 0, "label_id": label, "shapes": [
        box(0, [1.0, 1.0, 5.0, 5.0]), box(0, [2.0, 1.0, 6.0, 5.0])]}
    status, body = call(server, "PATCH", path, {"tracks": [two_on_one_frame]})
    assert status == 400 and "two shapes on one frame" in str(body)
    no_shapes = {"frame": 0, "label_id": label, "shapes": []}
    assert call(server, "PATCH", path, {"tracks": [no_shapes]})[0] == 400
    late = {"frame": 30, "label_id": label, "shapes": [box(30, [1.0, 1.0, 5.0, 5.0])]}
    status, body = call(server, "PATCH", path, {"tracks": [late]})
    assert status == 400 and "outside frames 0-29" in str(body)
    assert server.stored(task)["tracks"] == []


# --- jobs ---------------------------------------------------------------------------------

def test_job_states_are_listed(server):
    task = server.add_task("states", ["person"], size=FRAMES, segment_size=300, overlap=0)
    first, second, third = task.jobs
    second.state, second.stage = "in progress", "validation"
    third.state, third.stage = "completed", "acceptance"
    with sdk(server) as client:
        listed = {j.id: j for j in client.tasks.retrieve(task.id).get_jobs()}
        summary = client.tasks.retrieve(task.id).jobs
    assert {i: (j.state, j.stage, j.status) for i, j in listed.items()} == {
        first.id: ("new", "annotation", "annotation"),
        second.id: ("in progress", "validation", "validation"),
        third.id: ("completed", "acceptance", "completed")}
    assert (summary.count, summary.completed, summary.validation) == (3, 1, 1)
    # what cvat-sdk sent, and the filters and pages of the list
    sent = server.recorded(task=task, route="jobs_list")[-1]
    assert {k: v for k, v in sent.query.items()} == {
        "org": [""], "task_id": [str(task.id)], "page": ["1"]}
    status, page = call(server, "GET", f"/api/jobs?task_id={task.id}&state=completed")
    assert status == 200 and [r["id"] for r in page["results"]] == [third.id]
    status, page = call(server, "GET", f"/api/jobs?task_id={task.id}&page_size=2")
    assert page["count"] == 3 and len(page["results"]) == 2 and "page=2" in page["next"]
    status, page = call(server, "GET", page["next"].removeprefix(server.url))
    assert [r["id"] for r in page["results"]] == [first.id] and page["next"] is None
    assert call(server, "GET", f"/api/jobs?task_id={task.id}&page=3")[0] == 404
    # another user's task lists no jobs
    server.tokens["bob-token"] = "bob"
    status, page = call(server, "GET", f"/api/jobs?task_id={task.id}", user="bob-token")
    assert status == 200 and page["count"] == 0


def test_seed_stores_per_job(server):
    task = server.add_task("seed", ["person"], size=FRAMES, segment_size=300, overlap=5)
    label = server.label_id(task, "person")
    stored = server.seed(task, {"tracks": [
        {"id": 500, "frame": 10, "label_id": label, "shapes": [
            box(10, [1.0, 1.0, 9.0, 9.0]), box(30, [1.0, 1.0, 9.0, 9.0], outside=True)]},
        {"frame": 310, "label_id": label, "shapes": [box(310, [1.0, 1.0, 9.0, 9.0])]}]})
    assert stored["tracks"][0]["id"] == 500
    assert [len(j.annotations["tracks"]) for j in task.jobs] == [1, 1, 0]
    with pytest.raises(ValueError, match="fits no single job"):
        server.seed(task, {"tracks": [moving_track(label)]})
    # ids keep coming after a seeded one
    status, body = call(server, "PATCH", f"/api/tasks/{task.id}/annotations?action=create",
                        {"tracks": [{"frame": 700, "label_id": label,
                                     "shapes": [box(700, [1.0, 1.0, 9.0, 9.0])]}]})
    assert status == 200 and body["tracks"][0]["id"] > 500


def test_explicit_ids_do_not_move_the_sequence(server):
    """An update may name an id nobody has: the row is created with it, and PostgreSQL's
    sequence later hands out that id again - a duplicate key on the next create."""
    task = server.add_task("sequence", ["person"], size=30)
    label = server.label_id(task, "person")
    path = f"/api/tasks/{task.id}/annotations"
    status, body = call(server, "PATCH", path + "?action=create",
                        {"tags": [{"frame": 1, "label_id": label}]})
    assert status == 200
    taken = body["tags"][0]["id"] + 1
    status, body = call(server, "PATCH", path + "?action=update",
                        {"tags": [{"id": taken, "frame": 2, "label_id": label}]})
    assert status == 200 and body["tags"][0]["id"] == taken
    status, body = call(server, "PATCH", path + "?action=create",
                        {"tags": [{"frame": 3, "label_id": label}]})
    assert status == 400 and f"Key (id)=({taken}) already exists" in body
    assert [t["frame"] for t in server.stored(task)["tags"]] == [1, 2]
    # the sequence moved on: the next create works
    assert call(server, "PATCH", path + "?action=create",
                {"tags": [{"frame": 3, "label_id": label}]})[0] == 200


def test_update_of_one_piece_with_overlap_0(server):
    task = server.add_task("pieces", ["person"], size=FRAMES, segment_size=300, overlap=0)
    label = server.label_id(task, "person")
    path = f"/api/tasks/{task.id}/annotations"
    assert call(server, "PATCH", path + "?action=create",
                {"tracks": [moving_track(label)]})[0] == 200
    first = server.stored(task)["tracks"][0]  # closed by an outside keyframe at 300
    first["shapes"][1]["points"][0] += 2.0
    assert call(server, "PATCH", path + "?action=update", {"tracks": [first]})[0] == 200
    assert [len(j.annotations["tracks"]) for j in task.jobs] == [1, 1, 1]
    assert task.jobs[0].annotations["tracks"][0]["shapes"][1]["points"][0] == 242.0


def test_projects_list_their_tasks_and_share_their_labels(server):
    """``ProjectViewSet.retrieve`` (404 unknown, 403 another user's), ``TaskViewSet.list``
    with ``project_id`` (newest first, paged; an unknown project is an empty list) and
    ``LabelViewSet``: a project task's labels are the project's."""
    project = server.add_project("street", ["person", {"name": "car", "type": "rectangle"}])
    first = server.add_task("a", [], size=50, project=project)
    second = server.add_task("b", [], size=50, project=project)
    server.add_task("outside", ["person"], size=50)
    theirs = server.add_project("bobs", ["person"], owner="bob")
    status, body = call(server, "GET", f"/api/projects/{project.id}")
    assert status == 200 and body["tasks"]["count"] == 2 and body["name"] == "street"
    assert call(server, "GET", "/api/projects/999") == (404, {"detail": "Not found."})
    assert call(server, "GET", f"/api/projects/{theirs.id}")[0] == 403
    status, page = call(server, "GET", f"/api/tasks?project_id={project.id}&page_size=1")
    assert status == 200 and page["count"] == 2 and page["results"][0]["id"] == second.id
    assert page["results"][0]["project_id"] == project.id and "page=2" in page["next"]
    _, page = call(server, "GET", f"/api/tasks?project_id={project.id}&page_size=1&page=2")
    assert [t["id"] for t in page["results"]] == [first.id] and page["next"] is None
    assert call(server, "GET", "/api/tasks?project_id=999")[1]["count"] == 0
    assert call(server, "GET", "/api/tasks?project_id=x")[0] == 400
    for query in (f"task_id={first.id}", f"project_id={project.id}"):
        _, labels = call(server, "GET", f"/api/labels?{query}")
        assert [(x["name"], x["type"], x["project_id"], x["task_id"])
                for x in labels["results"]] == [("person", "any", project.id, None),
                                                ("car", "rectangle", project.id, None)]
    status, _ = call(server, "GET", f"/api/labels?task_id={first.id}&project_id={project.id}")
    assert status == 400
    assert call(server, "GET", f"/api/labels?project_id={theirs.id}")[0] == 403
    with pytest.raises(ValueError, match="project's labels"):
        server.add_task("c", ["person"], size=50, project=project)
