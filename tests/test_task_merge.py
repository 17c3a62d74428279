"""``autotrack task merge`` (the installed entry point) against the test server's per-job model
of CVAT (tests/cvat_server.py): pieces of one person merged across 3 jobs (overlap 5), read
back at task level, undone, and refused when the merged track was edited or the input is bad;
the review page written beside the proposals, its thumbnails from the task's frames.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from autotrack.cvat.task.annotations import CREATE, UPDATE, patch_annotations, without_ids
from autotrack.cvat.task.connection import connect, credentials_from
from autotrack.merge.cvat_tracks import shape_at, shown_runs
from cvat_server import CvatTestServer, FrameStore
from test_annotate_task import ALICE, AUTOTRACK, WRITES, Run

SIZE = 795  # vtest.avi's frames, as 3 jobs of 300 with overlap 5


GREY = 90
PIECE_ENDS = (280, 290, 400, 420)  # where make_task's person pieces end and start


def grey_jpeg() -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((576, 768, 3), GREY, np.uint8))
    assert ok
    return jpeg.tobytes()


@pytest.fixture(scope="module")
def server():
    with CvatTestServer(FrameStore([grey_jpeg()] * SIZE, 768, 576)) as app:
        yield app
        assert not app.errors, app.errors[0]
        assert not app.unknown_requests()


@pytest.fixture(scope="module")
def vtest_server(vtest_video):
    """vtest.avi's frames where the person pieces end and start, grey elsewhere (decoding
    only those: the rest of the video is grabbed past)."""
    jpegs = [grey_jpeg()] * SIZE
    capture = cv2.VideoCapture(str(vtest_video))
    try:
        for index in range(max(PIECE_ENDS) + 1):
            assert capture.grab()
            if index in PIECE_ENDS:
                ok, frame = capture.retrieve()
                assert ok
                jpegs[index] = cv2.imencode(".jpg", frame)[1].tobytes()
    finally:
        capture.release()
    with CvatTestServer(FrameStore(jpegs, 768, 576)) as app:
        yield app
        assert not app.errors, app.errors[0]
        assert not app.unknown_requests()


def run_merge(server: CvatTestServer, *args: str, backups: Path) -> Run:
    command = [str(AUTOTRACK), "task", "merge", *args, "--server-host", server.url,
               "--auth", ALICE, "--backup-dir", str(backups)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr)


def box(frame: int, x: float, *, outside: bool = False) -> dict[str, Any]:
    return {"type": "rectangle", "frame": frame, "points": [x, 100.0, x + 40.0, 220.0],
            "outside": outside}


def write_task_level(server: CvatTestServer, task: Any, data: dict[str, Any]) -> None:
    """A task-level create, as a script would send it (CVAT cuts it per job)."""
    connection = connect(server.url, credentials_from(ALICE, None))
    try:
        patch_annotations(connection, "task", task.id, CREATE, data)
    finally:
        connection.close()


def make_task(server: CvatTestServer, name: str) -> tuple[Any, dict[str, int]]:
    """Three pieces of one person (one in job 1, one across jobs 1-2, one across 2-3), a car
    track, a box and a tag a person drew."""
    task = server.add_task(name, ["person", "car"], segment_size=300, overlap=5)
    person, car = server.label_id(task, "person"), server.label_id(task, "car")

    def track(label: int, *shapes: dict[str, Any], source: str = "auto") -> dict[str, Any]:
        return {"frame": shapes[0]["frame"], "label_id": label, "source": source,
                "group": 0, "attributes": [], "shapes": list(shapes)}

    write_task_level(server, task, {"tracks": [
        track(person, box(100, 10), box(200, 110), box(280, 190), box(281, 190, outside=True)),
        track(person, box(290, 210), box(350, 270), box(400, 320), box(401, 320, outside=True)),
        track(person, box(420, 330), box(600, 510), box(700, 610), box(701, 610, outside=True)),
        track(car, box(50, 600), box(650, 20), box(651, 20, outside=True)),
    ], "shapes": [{"type": "rectangle", "frame": 10, "label_id": car, "source": "manual",
                   "points": [1.0, 2.0, 30.0, 40.0]}],
        "tags": [{"frame": 3, "label_id": person, "source": "manual"}]})
    return task, {"person": person, "car": car}


def task_tracks(server: CvatTestServer, task: Any) -> list[dict[str, Any]]:
    return server.stored(task)["tracks"]


def shown(track: dict[str, Any]) -> dict[int, tuple[float, ...]]:
    frames = {}
    for first, last in shown_runs(track):
        for frame in range(first, last + 1):
            frames[frame] = tuple(round(float(p), 2) for p in shape_at(track, frame)["points"])
    return frames


def person_ids(server: CvatTestServer, task: Any, person: int) -> list[int]:
    return sorted(int(t["id"]) for t in task_tracks(server, task) if t["label_id"] == person)


def test_three_pieces_across_jobs_become_one_track_and_undo_brings_them_back(server, tmp_path):
    task, labels = make_task(server, "merge-three")
    before = server.stored(task)
    pieces = [t for t in before["tracks"] if t["label_id"] == labels["person"]]
    assert len(pieces) == 3  # CVAT's task-level read links the job pieces of each
    union = {}
    for piece in pieces:
        union.update(shown(piece))
    ids = ",".join(str(t["id"]) for t in pieces)

    run = run_merge(server, str(task.id), "--join", ids, backups=tmp_path)
    assert run.rc == 0, run.err
    assert "checked: every job written, and the task, read back as intended" in run.out
    after = server.stored(task)
    merged = [t for t in after["tracks"] if t["label_id"] == labels["person"]]
    assert len(merged) == 1
    assert shown(merged[0]) == union  # every frame shown where a piece was, nowhere else
    keyframes = {(s["frame"], s["outside"]) for t in pieces for s in t["shapes"]}
    assert keyframes <= {(s["frame"], s["outside"]) for s in merged[0]["shapes"]}
    frames = [s["frame"] for s in merged[0]["shapes"]]
    assert len(frames) == len(set(frames))  # one shape per frame
    for job in task.jobs:  # a piece that ends inside its job ends with an outside keyframe
        for piece in server.stored_job(job)["tracks"]:
            last = max(piece["shapes"], key=lambda s: s["frame"])
            assert last["outside"] or last["frame"] >= job.stop - 1, (job.id, last)
    untouched = ("shapes", "tags")
    assert all(_no_ids(after[k]) == _no_ids(before[k]) for k in untouched)
    cars = [t for t in after["tracks"] if t["label_id"] == labels["car"]]
    assert [shown(t) for t in cars] == [shown(t) for t in before["tracks"]
                                        if t["label_id"] == labels["car"]]

    log = next(tmp_path.glob(f"task{task.id}-merge-*.json"))
    writes = len(server.recorded(task=task, methods=WRITES))
    undone = run_merge(server, "--undo", str(log), backups=tmp_path)
    assert undone.rc == 0, undone.err
    assert len(server.recorded(task=task, methods=WRITES)) > writes
    restored = server.stored(task)
    again = sorted((shown(t) for t in restored["tracks"] if t["label_id"] == labels["person"]),
                   key=min)
    assert again == sorted((shown(t) for t in pieces), key=min)
    assert all(_no_ids(restored[k]) == _no_ids(before[k]) for k in untouched)


def test_undo_refuses_when_someone_edited_the_merged_track(server, tmp_path):
    task, labels = make_task(server, "merge-edited")
    ids = person_ids(server, task, labels["person"])
    assert run_merge(server, str(task.id), "--join", ",".join(map(str, ids)),
                     backups=tmp_path).rc == 0
    job = task.jobs[1]
    piece = next(t for t in server.stored_job(job)["tracks"]
                 if t["label_id"] == labels["person"])
    piece["shapes"][-1]["points"] = [5.0, 5.0, 50.0, 90.0]  # a person moves a box
    connection = connect(server.url, credentials_from(ALICE, None))
    try:
        patch_annotations(connection, "job", job.id, UPDATE, {"tracks": [piece]})
    finally:
        connection.close()
    writes = len(server.recorded(task=task, methods=WRITES))
    log = next(tmp_path.glob(f"task{task.id}-merge-*.json"))
    refused = run_merge(server, "--undo", str(log), backups=tmp_path)
    assert refused.rc == 2 and f"in job {job.id}" in refused.err
    assert "was edited" in refused.err and "nothing written" in refused.err
    assert len(server.recorded(task=task, methods=WRITES)) == writes


@pytest.mark.parametrize("case, words", [
    ("unknown", "is not a track of this task"),
    ("labels", "different labels"),
    ("overlap", "both shown on frames 390-400"),
], ids=["unknown-id", "labels", "overlap"])
def test_bad_input_is_one_clear_line_and_writes_nothing(server, tmp_path, case, words):
    task, labels = make_task(server, f"merge-bad-{case}")
    tracks = task_tracks(server, task)
    person = sorted((t for t in tracks if t["label_id"] == labels["person"]),
                    key=lambda t: t["frame"])
    car = next(t for t in tracks if t["label_id"] == labels["car"])
    if case == "overlap":
        write_task_level(server, task, {"tracks": [{
            "frame": 390, "label_id": labels["person"], "source": "auto", "group": 0,
            "attributes": [], "shapes": [box(390, 300), box(500, 400),
                                         box(501, 400, outside=True)]}]})
        extra = max(int(t["id"]) for t in task_tracks(server, task))
        ids = [person[1]["id"], extra]
    else:
        ids = {"unknown": [person[0]["id"], 99999], "labels": [person[0]["id"], car["id"]]}[case]
    writes = len(server.recorded(task=task, methods=WRITES))
    run = run_merge(server, str(task.id), "--join", ",".join(map(str, ids)), backups=tmp_path)
    assert run.rc == 2 and words in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1
    assert len(server.recorded(task=task, methods=WRITES)) == writes
    if case == "overlap":
        trimmed = run_merge(server, str(task.id), "--join", ",".join(map(str, ids)), "--trim",
                            backups=tmp_path)
        assert trimmed.rc == 0 and "trimmed: track" in trimmed.out, trimmed.err


def test_a_track_of_another_task_is_refused_as_unknown(server, tmp_path):
    task, labels = make_task(server, "merge-foreign-a")
    other, other_labels = make_task(server, "merge-foreign-b")
    mine = person_ids(server, task, labels["person"])
    foreign = person_ids(server, other, other_labels["person"])[0]
    assert foreign not in {int(t["id"]) for t in task_tracks(server, task)}
    def writes_to_either() -> int:  # (a login is a POST too: count the tasks' own)
        return sum(len(server.recorded(task=t, methods=WRITES)) for t in (task, other))

    writes = writes_to_either()
    run = run_merge(server, str(task.id), "--join", f"{mine[0]},{foreign}", backups=tmp_path)
    assert run.rc == 2, run.err
    assert f"track {foreign} is not a track of this task" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert writes_to_either() == writes
    assert not list(tmp_path.iterdir())  # no backup, no log


def test_a_mask_track_is_refused(server, tmp_path):
    task, labels = make_task(server, "merge-mask")
    mask = {"type": "mask", "points": [0.0, 4.0, 10.0, 10.0, 11.0, 11.0], "outside": False}
    write_task_level(server, task, {"tracks": [{
        "frame": 10, "label_id": labels["person"], "source": "auto", "group": 0,
        "attributes": [], "shapes": [{**mask, "frame": 10}, {**mask, "frame": 40},
                                     {**mask, "frame": 41, "outside": True}]}]})
    masked = next(int(t["id"]) for t in task_tracks(server, task)
                  if t["shapes"][0]["type"] == "mask")
    person = person_ids(server, task, labels["person"])
    later = next(i for i in person if i != masked and
                 next(t for t in task_tracks(server, task) if t["id"] == i)["frame"] > 41)
    writes = len(server.recorded(task=task, methods=WRITES))
    run = run_merge(server, str(task.id), "--join", f"{masked},{later}", backups=tmp_path)
    assert run.rc == 2, run.err
    assert f"track {masked} is a mask track" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert len(server.recorded(task=task, methods=WRITES)) == writes
    assert not list(tmp_path.iterdir())
    listed = run_merge(server, str(task.id), "--reid", "none", "-o", str(tmp_path / "p.json"),
                       backups=tmp_path)  # never proposed either
    assert listed.rc == 0, listed.err
    document = json.loads((tmp_path / "p.json").read_text())
    assert masked not in {p[side] for p in document["proposals"] for side in ("before", "after")}


def test_proposals_are_printed_saved_and_applied_unless_the_task_changed(server, tmp_path):
    task, labels = make_task(server, "merge-proposals")
    proposals = tmp_path / "proposals.json"
    listed = run_merge(server, str(task.id), "-o", str(proposals), backups=tmp_path)
    assert listed.rc == 0, listed.err
    document = json.loads(proposals.read_text())
    assert document["task_id"] == task.id and document["proposals"], listed.out
    assert "merge proposals, best first" in listed.out
    page = tmp_path / f"task{task.id}-merge-review.html"  # beside -o FILE
    assert f"review page: {page}" in listed.out
    text = page.read_text(encoding="utf-8")
    assert len(thumbnails(text)) == 2 * len(document["proposals"])
    assert f"autotrack task merge {task.id} --apply --proposals {proposals} --server-host " \
           f"{server.url}" in text
    ids = person_ids(server, task, labels["person"])
    pairs = {(p["before"], p["after"]) for p in document["proposals"]}
    assert pairs <= {(a, b) for a in ids for b in ids if a != b}  # never the car
    # the task changes: a proposals file older than that is refused
    write_task_level(server, task, {"tags": [{"frame": 5, "label_id": labels["car"],
                                              "source": "manual"}]})
    first = document["proposals"][0]
    victim = next(t for t in task_tracks(server, task) if t["id"] == first["before"])
    job = next(j for j in task.jobs if j.start <= victim["frame"] <= j.stop)
    piece = next(t for t in server.stored_job(job)["tracks"] if t["id"] == victim["id"])
    piece["shapes"][0]["points"] = [0.0, 0.0, 10.0, 10.0]
    connection = connect(server.url, credentials_from(ALICE, None))
    try:
        patch_annotations(connection, "job", job.id, UPDATE, {"tracks": [piece]})
    finally:
        connection.close()
    stale = run_merge(server, str(task.id), "--apply", "--proposals", str(proposals),
                      "--accept", str(first["number"]), backups=tmp_path)
    assert stale.rc == 2 and "older than the task" in stale.err, stale.err


def thumbnails(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
            for b in found]


def test_review_page_shows_the_task_frames_and_reads_only_their_chunks(vtest_server,
                                                                       tmp_path):
    task, _ = make_task(vtest_server, "merge-review")
    run = run_merge(vtest_server, str(task.id), "--reid", "none", backups=tmp_path)
    assert run.rc == 0, run.err
    document = json.loads((tmp_path / f"task{task.id}-merge-proposals.json").read_text())
    page = (tmp_path / f"task{task.id}-merge-review.html").read_text(encoding="utf-8")
    assert f"review page: {tmp_path / f'task{task.id}-merge-review.html'}" in run.out
    shown = [int(f) for f in re.findall(r"frame (\d+)</figcaption>", page)]
    assert shown and set(shown) <= set(PIECE_ENDS), shown
    images = thumbnails(page)
    assert len(images) == len(shown) == 2 * len(document["proposals"])
    for image in images:  # vtest's street, not the grey of the frames around
        assert image.shape == (160, 160, 3) and image.std() > 20
    data = vtest_server.recorded(task=task, route="task_data")
    assert {r.query["type"][0] for r in data} == {"chunk"}
    assert sorted(int(r.query["number"][0]) for r in data) == \
        sorted({f // task.chunk_size for f in shown})  # each needed chunk once, no other


def _no_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(without_ids(items), key=lambda x: json.dumps(x, sort_keys=True))


def test_appearance_reads_the_chunks_of_the_pieces_ends_only(vtest_server, tmp_path):
    """With appearance (the default for person), the crops of each person piece's first and
    last 5 boxes are embedded: the chunks that hold those frames are read (then those of the
    page's thumbnails), no other; the car is never embedded."""
    task, labels = make_task(vtest_server, "merge-appearance")
    run = run_merge(vtest_server, str(task.id), backups=tmp_path)
    assert run.rc == 0, run.err
    assert "appearance: person-reid-0248 embeddings of 3 person pieces' first and last 5 " \
        "boxes (30 frames read)" in run.out, run.out
    document = json.loads((tmp_path / f"task{task.id}-merge-proposals.json").read_text())
    assert document["proposals"] and all("look (" in p["reason"]
                                         for p in document["proposals"])
    person = [t for t in task_tracks(vtest_server, task) if t["label_id"] == labels["person"]]
    ends = set()
    for track in person:
        shown_frames = sorted(shown(track))
        ends |= set(shown_frames[:5]) | set(shown_frames[-5:])
    page = (tmp_path / f"task{task.id}-merge-review.html").read_text(encoding="utf-8")
    thumbs = {int(f) for f in re.findall(r"frame (\d+)</figcaption>", page)}
    chunks = [int(r.query["number"][0])
              for r in vtest_server.recorded(task=task, route="task_data")]
    size = task.chunk_size
    appearance_chunks = sorted({f // size for f in ends})
    assert chunks == appearance_chunks + sorted({f // size for f in thumbs})
    # the same with --reid none: motion only, no appearance chunk read
    before = len(vtest_server.recorded(task=task, route="task_data"))
    plain = run_merge(vtest_server, str(task.id), "--reid", "none", "-o",
                      str(tmp_path / "plain.json"), backups=tmp_path)
    assert plain.rc == 0 and "appearance:" not in plain.out, plain.err
    assert "look (" not in (tmp_path / "plain.json").read_text()
    assert len(vtest_server.recorded(task=task, route="task_data")) - before == \
        len({f // size for f in thumbs})
