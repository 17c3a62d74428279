"""``autotrack finetune``: the whole loop on CPU in minutes, on vtest pieces.

The offline door (an XML ``autotrack annotate`` wrote on a vtest excerpt, and the excerpt's
frames) → dataset → 2 epochs of ``yolo11n.yaml`` at imgsz 64 → report → ONNX → registry →
``autotrack annotate --detector <new name>``, with the cvat-sdk made unimportable; a second
round from the first one's weights re-annotates a test-server task (only the tool's own
tracks replaced); the server door (``finetune --task``: a test-server task holding the same
XML's tracks, two of its three jobs completed) → dataset (the boxes the offline door reads) → 1
epoch → report → ONNX → registry → ``annotate --detector`` → ``--reannotate`` of a second task
(only the tool's own unedited tracks replaced; an edited and a manual track kept), and no
reviewed frames as one line with nothing left; an interrupted round resumes; a round the judge
refuses is published only with --force; the Nuclio function swaps in a new round without a
redeploy. Everything trained goes to tmp_path.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from autotrack.cli import main
from autotrack.errors import InputError, ModelNotFoundError
from autotrack.finetune import judge as judging
from autotrack.finetune import publish as publishing
from autotrack.finetune import redeploy
from autotrack.finetune import train as training
from autotrack.models import find_spec, published_models, resolve_model, sha256_of

from conftest import MODELS_DIR, REPO_ROOT
from cvat_server import CvatTestServer, FrameStore
from test_task_merge import write_task_level

pytest.importorskip("ultralytics")
FRAMES = 120  # the vtest excerpt
ALICE = "alice:alice-pass"
TRAIN = ["--base", "yolo11n.yaml", "--imgsz", "64", "--batch", "8", "--workers", "0", "-q"]
DATASET = ["--stride", "4", "--block", "40", "--guard", "2", "--val", "0.25"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Models: a fresh published-models folder first, the shared test models after it."""
    root = tmp_path_factory.mktemp("finetune")
    models = root / "models"
    models.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTRACK_MODELS", f"{models}{os.pathsep}{MODELS_DIR}")
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        patch.setenv("YOLO_OFFLINE", "1")
        import torch

        torch.set_num_threads(1)
        yield SimpleNamespace(root=root, models=models, runs=root / "runs")


@pytest.fixture(autouse=True)
def _published_models_first(env, monkeypatch):
    """conftest points AUTOTRACK_MODELS at the shared models for every test; these tests also
    need the folder rounds are published into."""
    monkeypatch.setenv("AUTOTRACK_MODELS", f"{env.models}{os.pathsep}{MODELS_DIR}")


@pytest.fixture(scope="module")
def excerpt(env, vtest_video):
    """The first FRAMES frames of vtest.avi as a frame folder, and the XML autotrack annotate
    writes on them (yolox-nano + ByteTrack): its tracks stand for reviewed labels."""
    frames = env.root / "vtest-excerpt"
    frames.mkdir()
    capture = cv2.VideoCapture(str(vtest_video))
    images = []
    for i in range(FRAMES):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"{i:06d}.png"), image)
        images.append(image)
    capture.release()
    xml = env.root / "vtest-excerpt.xml"
    assert main(["annotate", str(frames), "-o", str(xml), "--classes", "person", "-q"]) == 0
    return SimpleNamespace(frames=frames, xml=xml, images=images)


def finetune(env, *args: str) -> int:
    return main(["finetune", "-o", str(env.runs), "--models", str(env.models), *TRAIN, *args])


@pytest.fixture(scope="module")
def first_round(env, excerpt):
    """Round 1 through the offline door, with the cvat-sdk unimportable (no cvat extra)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("cvat_sdk", "cvat_cli"):
            patch.setitem(sys.modules, name, None)
        import io
        from contextlib import redirect_stdout

        out = io.StringIO()
        with redirect_stdout(out):
            rc = finetune(env, "--annotations", str(excerpt.xml), "--video", str(excerpt.frames),
                          "--name", "vtest", "--epochs", "2", *DATASET, "--force",
                          "--deploy", "nuclio", "--dry-run")
    return SimpleNamespace(rc=rc, out=out.getvalue(), folder=env.runs / "vtest-r1")


def test_offline_loop_dataset_train_report_onnx_registry(env, excerpt, first_round):
    assert first_round.rc == 0, first_round.out
    folder = first_round.folder
    dataset = folder / "dataset"
    assert (dataset / "data.yaml").is_file() and (dataset / "manifest.json").is_file()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["names"] == ["person"]
    assert manifest["split"]["frames"]["train"] > 0 and manifest["split"]["frames"]["val"] > 0
    assert (folder / "train" / "weights" / "best.pt").is_file()
    state = json.loads((folder / "run.json").read_text())
    assert state["steps"]["train"]["epochs"] == 2
    assert set(state["steps"]) >= {"dataset", "train", "judge", "publish"}
    report = (folder / "report.md").read_text()
    assert "| person |" in report and "## Training curves" in report
    assert (folder / "curves.png").is_file() and "![training curves](curves.png)" in report
    record = json.loads((folder / "judge.json").read_text())
    assert record["split"] == "val"
    assert record["base"]["matched"] == {"person": "person"}  # a COCO base matched by name
    # published: .pt, .onnx and the entry, sha256 recorded; nothing partial left
    entry = json.loads((env.models / "vtest-r1.model.json").read_text())
    assert entry["classes"] == ["person"] and entry["imgsz"] == 64
    for kind in ("pt", "onnx"):
        path = env.models / entry["files"][kind]["file"]
        assert sha256_of(path) == entry["files"][kind]["sha256"]
    assert not [p for p in env.models.iterdir() if p.name.startswith(".")]
    assert find_spec("vtest").name == "vtest-r1"  # the family means its newest round
    assert "published vtest-r1" in first_round.out


def test_new_model_annotates_by_name_and_its_onnx_runs(env, excerpt, first_round, capsys):
    assert first_round.rc == 0
    few = env.root / "few-frames"
    few.mkdir(exist_ok=True)
    for i in range(4):
        cv2.imwrite(str(few / f"{i:06d}.png"), excerpt.images[i])
    out = env.root / "by-name.xml"
    assert main(["annotate", str(few), "-o", str(out), "--detector", "vtest-r1", "-q"]) == 0
    assert out.is_file() and "<annotations>" in out.read_text()
    from autotrack.detectors import load_detector

    onnx = load_detector(str(env.models / "vtest-r1.onnx"))
    assert onnx.class_names == ("person",)
    onnx.detect(excerpt.images[0])
    from autotrack.cvat.sdk.detection import create_ultralytics  # functions/ultralytics.py

    function = create_ultralytics("vtest-r1")
    assert [label.name for label in function.spec.labels] == ["person"]
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert "vtest-r1" in listed and "yolox-nano" in listed and "classes person" in listed


def test_nuclio_dry_run_stages_a_function_that_reads_the_models_folder(env, first_round):
    assert first_round.rc == 0
    out = first_round.out
    staged = first_round.folder / "nuclio" / "autotrack-ft-vtest"
    assert f"cp -R {staged} " in out and "nuctl deploy" in out
    assert "autotrack-ft-vtest/function.yaml" in out
    assert "nuctl get function autotrack-ft-vtest" in out
    config = yaml.safe_load((staged / "function.yaml").read_text())
    assert config["metadata"]["name"] == "autotrack-ft-vtest"
    assert json.loads(config["metadata"]["annotations"]["spec"]) == [
        {"id": 0, "name": "person", "type": "rectangle"}]
    env_vars = {e["name"]: e["value"] for e in config["spec"]["env"]}
    assert env_vars["AUTOTRACK_ULTRALYTICS_MODEL"] == "vtest"
    assert env_vars["AUTOTRACK_MODELS"].split(":")[0] == redeploy.MOUNT
    assert int(env_vars["AUTOTRACK_RELOAD_SECONDS"]) > 0
    volume = config["spec"]["volumes"][0]
    assert volume["volume"]["hostPath"]["path"] == str(env.models.resolve())
    assert volume["volumeMount"]["mountPath"] == redeploy.MOUNT
    assert "bake" not in (staged / "function.yaml").read_text()
    assert (staged / "main.py").read_text() == (
        REPO_ROOT / "serverless/ultralytics/nuclio/main.py").read_text()


def test_gpu_function_yaml_rewrites_too():
    text = (REPO_ROOT / "serverless/ultralytics/nuclio/function-gpu.yaml").read_text()
    config = yaml.safe_load(redeploy.function_yaml(text, "street", ["person", "forklift"],
                                                   Path("/srv/models")))
    assert len(json.loads(config["metadata"]["annotations"]["spec"])) == 2
    assert config["spec"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert config["spec"]["volumes"][0]["volume"]["hostPath"]["path"] == "/srv/models"


def test_agent_lines_name_the_round_and_the_models_folder(tmp_path):
    lines = redeploy.agent_lines("street-r2", tmp_path, ["--server-host", "http://cvat:8080",
                                                         "--auth", "alice"], "cuda")
    assert lines[0] == f"export AUTOTRACK_MODELS={tmp_path.resolve()}"
    assert "function create-native 'street-r2 (autotrack)'" in lines[1]
    assert "functions/ultralytics.py" in lines[1] and "-p model=str:street-r2" in lines[1]
    assert lines[2].startswith("cvat-cli --server-host http://cvat:8080 --auth alice function "
                               "run-agent FUNCTION_ID")
    assert "-p device=str:cuda" in lines[2]


# --- round 2: from round 1's weights, re-annotating a task ------------------------------------

def _store(images: list[np.ndarray]) -> FrameStore:
    jpegs = [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
             for image in images]
    return FrameStore(jpegs, images[0].shape[1], images[0].shape[0])


def test_second_round_from_the_last_round_reannotates_only_own_tracks(env, excerpt,
                                                                       first_round, capsys):
    assert first_round.rc == 0
    with CvatTestServer(_store(excerpt.images)) as server:
        task = server.add_task("second", ["person"])
        backups = env.root / "backups"
        assert main(["task", "annotate", str(task.id), "-q", "--server-host", server.url,
                     "--auth", ALICE, "--backup-dir", str(backups),
                     "--detector", "yolox-nano"]) == 0
        person = server.label_id(task, "person")
        manual = {"frame": 0, "label_id": person, "source": "manual", "shapes": [
            {"type": "rectangle", "frame": 0, "points": [10.0, 20.0, 60.0, 140.0]},
            {"type": "rectangle", "frame": 30, "points": [30.0, 20.0, 80.0, 140.0]}]}
        server.seed(task, {"tracks": [manual]})
        before = server.stored(task)["tracks"]
        own_before = [t for t in before if t["source"] != "manual"]
        assert own_before
        capsys.readouterr()
        rc = finetune(env, "--dataset", str(first_round.folder / "dataset"), "--name", "vtest",
                      "--base", "vtest", "--epochs", "1", "--force",
                      "--reannotate", str(task.id), "--server-host", server.url,
                      "--auth", ALICE, "--backup-dir", str(backups))
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        assert "alice:***" in captured.out and "alice-pass" not in captured.out
        after = server.stored(task)["tracks"]
        assert [t for t in after if t["source"] == "manual"][0]["shapes"][1]["points"] == \
            manual["shapes"][1]["points"]
        kept_ids = {t["id"] for t in after}
        assert not kept_ids & {t["id"] for t in own_before}  # every own track replaced
        assert "replaced: removed" in captured.out
        assert sorted(backups.glob("*.json"))  # backed up before the write
        state = json.loads((env.runs / "vtest-r2" / "run.json").read_text())
        assert state["base"] == "vtest"
        entry = json.loads((env.models / "vtest-r2.model.json").read_text())
        assert entry["base"]["round"] == "vtest-r1"
        # a task without a label the model has: one line
        other = server.add_task("cars", ["car"])
        capsys.readouterr()
        rc = main(["task", "annotate", str(other.id), "--replace", "--detector", "vtest", "-q",
                   "--server-host", server.url, "--auth", ALICE,
                   "--backup-dir", str(backups)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and "car" in err, err
        assert not server.stored(other)["tracks"]


# --- the server door: finetune --task ------------------------------------------------------------

@pytest.fixture(scope="module")
def cvat(excerpt):
    """The test server over the excerpt's frames (as JPEG chunks)."""
    with CvatTestServer(_store(excerpt.images)) as server:
        yield server
        assert not server.errors, server.errors[0]
        assert not server.unknown_requests()


def _reviewed_task(server: CvatTestServer, xml: Path, name: str,
                   states: list[tuple[str, str]]) -> Any:
    """A task of 3 jobs of 40 frames holding the XML's tracks (which stand for reviewed
    labels), each job in the (state, stage) given."""
    from autotrack.cvat.task.annotations import without_ids
    from autotrack.cvat_xml import read_cvat_xml

    doc = read_cvat_xml(xml)
    task = server.add_task(name, ["person"], segment_size=40, overlap=0)
    label_ids = {local: server.label_id(task, label) for local, label in doc.labels.items()}
    data = without_ids(doc.annotations())
    for key in ("tracks", "shapes", "tags"):
        for item in data[key]:
            item["label_id"] = label_ids[item["label_id"]]
    assert data["tracks"]
    write_task_level(server, task, data)  # the server cuts it per job
    for job, (state, stage) in zip(task.jobs, states, strict=True):
        job.state, job.stage = state, stage
    return task


def _labels(dataset: Path) -> dict[int, list[list[float]]]:
    """Frame -> its label lines as numbers, from a dataset's manifest."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    return {row["frame"]: sorted([float(v) for v in line.split()] for line in (
        dataset / "labels" / row["split"] / f"{row['source']}_{row['frame']:06d}.txt"
    ).read_text().splitlines()) for row in manifest["frames"]}


def test_server_door_loop_task_dataset_train_report_onnx_registry_reannotate(
        env, excerpt, first_round, cvat, capsys):
    """finetune --task: the completed jobs of a task → dataset → 1 epoch → report → ONNX →
    registry → annotate --detector by name; --reannotate of a second task replaces only the
    tool's own unedited tracks."""
    assert first_round.rc == 0
    reviewed = _reviewed_task(cvat, excerpt.xml, "reviewed", [
        ("completed", "annotation"), ("completed", "acceptance"), ("in progress", "annotation")])
    # the second task: autotrack's own tracks, one of them edited since, and a manual one
    second = cvat.add_task("second", ["person"], size=24)
    backups = env.root / "served-backups"
    assert main(["task", "annotate", str(second.id), "-q", "--server-host", cvat.url,
                 "--auth", ALICE, "--backup-dir", str(backups), "--detector", "yolox-nano"]) == 0
    own = second.annotations["tracks"]
    assert len(own) >= 2
    own[0]["shapes"][-1]["points"][0] += 9.0  # a person moves a keyframe
    edited = own[0]["id"]
    manual = {"frame": 0, "label_id": cvat.label_id(second, "person"), "source": "manual",
              "shapes": [{"type": "rectangle", "frame": 0, "points": [10.0, 20.0, 60.0, 140.0]},
                         {"type": "rectangle", "frame": 20,
                          "points": [30.0, 20.0, 80.0, 140.0]}]}
    cvat.seed(second, {"tracks": [manual]})
    before = {t["id"]: t for t in cvat.stored(second)["tracks"]}
    replaceable = {i for i, t in before.items() if t["source"] != "manual" and i != edited}
    assert replaceable
    capsys.readouterr()
    requests_before = len(cvat.requests)
    rc = finetune(env, "--task", str(reviewed.id), "--name", "served", "--epochs", "1",
                  *DATASET, "--force", "--reannotate", str(second.id),
                  "--server-host", cvat.url, "--auth", ALICE, "--backup-dir", str(backups))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"dataset: autotrack task export --task {reviewed.id} --states completed" \
        in captured.out
    assert "alice:***" in captured.out and "alice-pass" not in captured.out + captured.err
    folder = env.runs / "served-r1"
    # the dataset: the two completed jobs only, boxes as the offline door reads the XML
    dataset = folder / "dataset"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["names"] == ["person"]
    [source] = manifest["sources"]
    assert source["task"] == reviewed.id
    assert [job["exported"] for job in source["jobs"]] == [True, True, False]
    served = _labels(dataset)
    assert served and max(served) < 80
    assert manifest["split"]["frames"]["train"] > 0 and manifest["split"]["frames"]["val"] > 0
    offline = _labels(first_round.folder / "dataset")
    common = sorted(set(served) & set(offline))
    assert len(common) >= 5 and any(served[f] for f in common)
    for frame in common:
        assert len(served[frame]) == len(offline[frame]), frame
        assert np.allclose(np.array(served[frame]).reshape(-1, 5),
                           np.array(offline[frame]).reshape(-1, 5), atol=2e-6), frame
    chunks = {int(r.query["number"][0]) for r in cvat.recorded(task=reviewed, route="task_data")
              if r.query.get("type") == ["chunk"]}
    assert chunks and max(chunks) <= 79 // reviewed.chunk_size  # job 3's frames never read
    writes = cvat.recorded(task=reviewed, methods=("POST", "PUT", "PATCH", "DELETE"))
    finetune_made = {id(r) for r in cvat.requests[requests_before:]}
    assert not [r for r in writes if id(r) in finetune_made]  # finetune wrote nothing to it
    # trained, judged, published with its ONNX
    state = json.loads((folder / "run.json").read_text())
    assert set(state["steps"]) >= {"dataset", "train", "judge", "publish"}
    assert state["steps"]["train"]["epochs"] == 1
    assert "| person |" in (folder / "report.md").read_text()
    assert json.loads((folder / "judge.json").read_text())["split"] == "val"
    entry = json.loads((env.models / "served-r1.model.json").read_text())
    assert entry["classes"] == ["person"] and entry["imgsz"] == 64
    assert entry["dataset"]["path"] == str(dataset.resolve())
    for kind in ("pt", "onnx"):
        path = env.models / entry["files"][kind]["file"]
        assert sha256_of(path) == entry["files"][kind]["sha256"]
    assert find_spec("served").name == "served-r1"
    # the new model by name
    few = env.root / "served-frames"
    few.mkdir()
    for i in range(3):
        cv2.imwrite(str(few / f"{i:06d}.png"), excerpt.images[i])
    out = env.root / "served.xml"
    assert main(["annotate", str(few), "-o", str(out), "--detector", "served-r1", "-q"]) == 0
    assert "<annotations>" in out.read_text()
    # re-annotated: the tool's own unedited tracks replaced, the edited and the manual kept
    assert f"re-annotate: autotrack task annotate {second.id} --replace --detector served-r1" \
        in captured.out
    assert "replaced: removed" in captured.out and "1 edited since (kept)" in captured.out
    after = {t["id"]: t for t in cvat.stored(second)["tracks"]}
    assert not set(after) & replaceable
    assert after[edited]["shapes"] == before[edited]["shapes"]
    [kept] = [t for t in after.values() if t["source"] == "manual"]
    assert [s["points"] for s in kept["shapes"]] == [s["points"] for s in manual["shapes"]]
    assert len(sorted(backups.glob("*.json"))) >= 2  # backed up before each write


def test_server_door_without_reviewed_frames_is_one_line(env, excerpt, cvat, capsys):
    task = _reviewed_task(cvat, excerpt.xml, "unreviewed", [
        ("new", "annotation"), ("in progress", "annotation"), ("rejected", "validation")])
    models_before = sorted(p.name for p in env.models.iterdir())
    requests_before = len(cvat.requests)
    capsys.readouterr()
    rc = finetune(env, "--task", str(task.id), "--name", "unreviewed", "--epochs", "1",
                  *DATASET, "--server-host", cvat.url, "--auth", ALICE)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("autotrack: error: no reviewed frames: no job is in state completed")
    assert "--states in-progress,new,rejected includes them" in err
    for job in task.jobs:
        assert f"job {job.id} (frames {job.start}-{job.stop}, {job.stage}, {job.state})" in err
    assert sorted(p.name for p in env.models.iterdir()) == models_before
    # no round folder left, so the same command runs again once the jobs are done
    assert not (env.runs / "unreviewed-r1").exists()
    # a task the server does not have, a wrong password: one line each, nothing left
    for task_id, auth in ((999, ALICE), (task.id, "alice:not-her-pass")):
        rc = finetune(env, "--task", str(task_id), "--name", "unreviewed", "--epochs", "1",
                      "--server-host", cvat.url, "--auth", auth)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert "not-her-pass" not in err and not (env.runs / "unreviewed-r1").exists(), err
    assert not [r for r in cvat.requests[requests_before:]
                if r.method != "GET" and r.route != "login"]


# --- resume, refusal, force --------------------------------------------------------------------

def test_an_interrupted_round_resumes_and_a_refused_one_needs_force(env, first_round, capsys,
                                                                     monkeypatch):
    assert first_round.rc == 0
    dataset = first_round.folder / "dataset"
    real_train = training.train

    def interrupted(*args: Any, **kwargs: Any):
        def stop(trainer: Any) -> None:
            if trainer.epoch == 0:
                raise KeyboardInterrupt

        return real_train(*args, **kwargs, callbacks={"on_model_save": stop})

    monkeypatch.setattr(training, "train", interrupted)
    command = ["--dataset", str(dataset), "--name", "resumed", "--epochs", "2"]
    capsys.readouterr()
    assert finetune(env, *command) == 130
    err = capsys.readouterr().err
    assert "1 of 2 epochs saved" in err and "--resume" in err
    folder = env.runs / "resumed-r1"
    assert (folder / "train" / "weights" / "last.pt").is_file()
    assert not (env.models / "resumed-r1.model.json").exists()
    # without --resume: one line that says how to go on
    assert finetune(env, *command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    # resumed, then judged worse than its base: not published without --force
    monkeypatch.setattr(training, "train", real_train)
    real_judge = judging.judge

    def worse(base: judging.Scores, new: judging.Scores) -> judging.Verdict:
        verdict = real_judge(base, new)
        verdict.worse, verdict.text = True, "the new model is worse than the base (test)"
        return verdict

    monkeypatch.setattr(judging, "judge", worse)
    assert finetune(env, *command, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "resumed-r1: epoch 2/2 saved" in err  # the one epoch left, with its progress line
    errors = [line for line in err.splitlines() if line.startswith("autotrack:")]
    assert len(errors) == 1 and "not published" in errors[0] and "--force" in errors[0]
    assert not (env.models / "resumed-r1.model.json").exists()
    with open(folder / "train" / "results.csv") as f:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(f)]
    assert epochs == [1, 2]  # the saved epoch was not trained again
    state = json.loads((folder / "run.json").read_text())
    assert state["steps"]["train"]["resumed"] is True
    monkeypatch.setattr(judging, "judge", real_judge)
    assert finetune(env, *command, "--resume", "--force", "--no-onnx") == 0
    entry = json.loads((env.models / "resumed-r1.model.json").read_text())
    assert entry["forced"] is True and "onnx" not in entry["files"]
    assert json.loads((folder / "run.json").read_text())["steps"]["train"]["resumed"] is True


# --- the Nuclio function swaps rounds ------------------------------------------------------------

class _Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda message, *args: self.lines.append((level, message))


def test_nuclio_function_swaps_in_a_new_round_without_a_redeploy(env, first_round, tmp_path,
                                                                  monkeypatch):
    assert first_round.rc == 0
    from autotrack.cvat.nuclio import detector

    folder = tmp_path / "mounted"
    folder.mkdir()
    weights = env.models / "vtest-r1.pt"
    publishing.publish("street-r1", weights, None, folder, {"classes": ["person"], "imgsz": 64})
    monkeypatch.setenv("AUTOTRACK_MODELS", str(folder))
    monkeypatch.setenv("AUTOTRACK_RELOAD_SECONDS", "0.001")
    factory = detector.DetectorFromEnv("AUTOTRACK_TEST_MODEL", "street")
    import nuclio_sdk

    context = SimpleNamespace(logger=_Logger(), user_data=SimpleNamespace(),
                              Response=nuclio_sdk.Response)
    detector.init_context(context, factory)
    first = context.user_data.autotrack
    event = nuclio_sdk.Event(body={"image": _jpeg_b64(), "threshold": 0.5})
    detector.handle_reloading(context, event, factory)
    assert context.user_data.autotrack is first  # nothing new
    publishing.publish("street-r2", env.models / "vtest-r2.pt"
                       if (env.models / "vtest-r2.pt").exists() else weights, None, folder,
                       {"classes": ["person"], "imgsz": 64})
    answer = detector.handle_reloading(context, event, factory)
    assert context.user_data.autotrack is not first
    assert ("info", "autotrack: now serving street-r2") in context.logger.lines
    assert answer.status_code == 200
    # a round with other classes is refused: the function keeps serving the one before
    from ultralytics import YOLO

    coco = tmp_path / "coco.pt"
    YOLO("yolo11n.yaml").save(str(coco))
    publishing.publish("street-r3", coco, None, folder, {"classes": [], "imgsz": 64})
    serving = context.user_data.autotrack
    detector.handle_reloading(context, event, factory)
    assert context.user_data.autotrack is serving
    assert any(level == "error" and "street-r3 has classes" in message
               for level, message in context.logger.lines)


def _jpeg_b64() -> str:
    import base64

    image = np.full((64, 96, 3), 127, np.uint8)
    return base64.b64encode(cv2.imencode(".jpg", image)[1].tobytes()).decode()


# --- small parts ---------------------------------------------------------------------------------

def test_average_precision_and_matching_follow_the_validator():
    gt_classes, gt_boxes = np.array([0, 0]), np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]])
    hits = judging.match(gt_classes, gt_boxes, np.array([0, 0, 0]),
                         np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60.0]]))
    assert hits[:, 0].tolist() == [True, False, False]  # one detection per box
    ap = judging.class_ap(np.array([[True] * 10, [True] * 10]), np.array([0.9, 0.8]), 2)
    assert np.allclose(ap, 0.995)  # a perfect detector: 0.995, as ultralytics reports it
    from ultralytics.utils.metrics import compute_ap

    rng = np.random.default_rng(0)
    for _ in range(20):  # the same area as ultralytics' validator computes
        recall = np.sort(rng.uniform(0, 1, 12))
        precision = rng.uniform(0, 1, 12)
        assert np.isclose(judging.average_precision(recall, precision),
                          compute_ap(recall, precision)[0])
    assert judging.match_classes(["Person", "car"], ["person", "forklift"]) == {
        "person": 0, "forklift": None}


def test_matching_is_the_validators_most_confident_first():
    """A box goes to the most confident detection overlapping it enough, not to the best
    overlap: the rule ultralytics' validator (and COCO) score by, checked against its own
    ``match_predictions`` on random scenes."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator

    gt = np.array([[0, 0, 10, 10.0]])
    hits = judging.match(np.array([0]), gt, np.array([0, 0]),
                         np.array([[0, 0, 10, 11], [0, 0, 10, 10.0]]), np.array([0.9, 0.3]))
    assert hits[:, 0].tolist() == [True, False]  # IoU 0.91 but more confident
    assert hits[:, -1].tolist() == [False, True]  # at IoU 0.95 only the exact box is left
    validator = DetectionValidator()
    rng = np.random.default_rng(0)
    for _ in range(40):
        n_gt, n_pred = rng.integers(1, 6), rng.integers(1, 12)
        corner = rng.uniform(0, 40, (n_gt, 2))
        gt = np.concatenate([corner, corner + rng.uniform(5, 20, (n_gt, 2))], axis=1)
        boxes = gt[rng.integers(0, n_gt, n_pred)] + rng.normal(0, 2, (n_pred, 4))
        gt_classes, classes = rng.integers(0, 2, n_gt), rng.integers(0, 2, n_pred)
        scores = rng.uniform(0, 1, n_pred)
        order = np.argsort(-scores)  # the validator takes detections sorted by score
        expected = validator.match_predictions(
            torch.tensor(classes[order]), torch.tensor(gt_classes),
            torch.tensor(judging.box_iou(gt, boxes[order]))).numpy()
        mine = judging.match(gt_classes, gt, classes, boxes, scores)[order]
        assert (mine == expected).all()


def test_a_base_that_knows_no_class_is_not_compared():
    base = judging.Scores("base", {"forklift": None}, {}, 3, 0.1)
    new = judging.Scores("new", {"forklift": "forklift"},
                         {"forklift": {"mAP50": 0.2, "mAP50-95": 0.1}}, 3, 0.1)
    verdict = judging.judge(base, new)
    assert not verdict.worse and "nothing to compare" in verdict.text
    worse = judging.judge(judging.Scores("b", {"p": "p"}, {"p": {"mAP50": .5, "mAP50-95": .3}},
                                         3, 0), judging.Scores("n", {"p": "p"}, {"p": {
                                             "mAP50": .6, "mAP50-95": .2}}, 3, 0))
    assert worse.worse and "worse than the base" in worse.text


def test_malformed_label_line_is_one_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(InputError, match=r"x.txt:1: not a YOLO box line"):
        judging.read_labels(path, 100, 100, 1)


def test_missing_base_checkpoint_says_where_to_put_it(env, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as caught:
        training.resolve_base("yolo11n.pt")
    message = str(caught.value)
    assert str(tmp_path) in message and "yolo11n.pt" in message and "https://" in message
    assert "--base yolo11n.yaml" in message and "\n" not in message


@pytest.mark.parametrize("args, message", [
    (["--name", "x"], "give one source of reviewed boxes"),
    (["--name", "x", "--annotations", "a.xml"], "needs both --annotations XML and --video"),
    (["--name", "x", "--dataset", "d", "--task", "3"], "got task and dataset"),
    (["--name", "Street", "--dataset", "d"], "lower-case"),
    (["--name", "street-r2", "--dataset", "d"], "ends in a round number"),
    (["--name", "yolox-nano", "--dataset", "d"], "built-in model"),
    (["--name", "x", "--dataset", "d", "--imgsz", "100"], "multiple of 32"),
    (["--name", "x", "--dataset", "d", "--reannotate", "4"], "--server-host"),
])
def test_bad_options_are_one_line(args, message, capsys, tmp_path):
    assert main(["finetune", *args, "-o", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_unreadable_frame_is_one_line_and_leaves_no_dataset(env, excerpt, tmp_path, capsys):
    short = tmp_path / "short"
    short.mkdir()
    for i in range(10):
        cv2.imwrite(str(short / f"{i:06d}.png"), excerpt.images[i])
    rc = main(["finetune", "--annotations", str(excerpt.xml), "--video", str(short),
               "--name", "short", "-o", str(tmp_path / "runs"), *TRAIN, *DATASET])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "frame" in err, err
    assert not (tmp_path / "runs" / "short-r1").exists()  # nothing left: no --resume needed


def test_a_missing_base_leaves_no_round_folder(env, first_round, tmp_path, capsys):
    """The base is checked before the export; the corrected command needs no --resume (which
    would keep the missing base)."""
    runs = tmp_path / "runs"
    rc = main(["finetune", "--dataset", str(first_round.folder / "dataset"), "--name", "nobase",
               "-o", str(runs), "--base", "nonesuch.pt", "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nonesuch.pt" in err, err
    assert list(runs.iterdir()) == []


def test_a_full_disk_publishes_nothing(tmp_path, monkeypatch):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    onnx = tmp_path / "best.onnx"
    onnx.write_bytes(b"onnx")
    folder = tmp_path / "models"
    real = publishing._copy_atomic

    def full(source: Path, path: Path) -> None:
        if path.suffix == ".onnx":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(source, path)

    monkeypatch.setattr(publishing, "_copy_atomic", full)
    with pytest.raises(InputError, match="No space left on device.*nothing was published"):
        publishing.publish("street-r1", weights, onnx, folder, {"classes": ["a"]})
    assert list(folder.iterdir()) == []


def test_published_entries_are_checked_and_resolved_by_family(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    weights = tmp_path / "w.pt"
    for n in (1, 2):
        weights.write_bytes(f"round {n}".encode())
        publishing.publish(f"street-r{n}", weights, None, tmp_path, {"classes": ["person"],
                                                                     "imgsz": 64})
    (tmp_path / "broken.model.json").write_text("{")
    assert sorted(published_models()) == ["street-r1", "street-r2"]
    assert find_spec("street").name == "street-r2" and find_spec("STREET-R1").name == "street-r1"
    assert publishing.next_round("street", tmp_path) == 3
    assert resolve_model("street") == tmp_path / "street-r2.pt"
    (tmp_path / "street-r2.pt").write_bytes(b"tampered")
    with pytest.raises(ModelNotFoundError, match="changed since it was published"):
        resolve_model("street-r2")
    with pytest.raises(InputError, match="never written over"):
        publishing.publish("street-r1", weights, None, tmp_path, {})

