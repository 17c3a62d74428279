"""Every serverless/*/nuclio/function*.yaml carries what CVAT's lambda manager and nuctl read,
and its label spec matches the model the function serves."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from autotrack.coco import COCO_CLASSES
from autotrack.cvat import label_spec
from autotrack.cvat.deploy import bake as bake_model
from autotrack.cvat.label_spec import (
    detector_shape_type,
    function_yaml_spec,
    parse_spec,
    spec_json,
    spec_problems,
    spec_yaml_block,
)
from autotrack.cvat.nuclio.request import MAX_BODY_BYTES
from autotrack.detectors import load_detector
from autotrack.models import REGISTRY
from conftest import MODELS_DIR, REPO_ROOT

SERVERLESS = REPO_ROOT / "serverless"
FUNCTIONS = sorted(p.parents[1].name for p in SERVERLESS.glob("*/nuclio/main.py"))
# Functions with a COCO detector baked in; the others (Re-ID, trackers, interactors, SAM3 with its
# prompt vocabulary) are checked in their own test files.
DETECTORS = [f for f in FUNCTIONS if f in ("ultralytics", "yolox")]
CONFIGS = sorted(p for p in SERVERLESS.glob("*/nuclio/function*.yaml")
                 if p.parents[1].name in DETECTORS)
# the model each function serves by default, as a test can build it offline
TEST_MODELS = {"yolox": "yolox-nano", "ultralytics": "yolo11n.yaml"}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # Kubernetes/docker-safe names


def _load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _env(config: dict) -> dict[str, object]:
    return {item["name"]: item["value"] for item in config["spec"]["env"]}


def _directives(config: dict) -> list[str]:
    directives = config["spec"]["build"]["directives"]
    return [d["value"] for stage in ("preCopy", "postCopy") for d in directives.get(stage, [])
            if d["kind"] == "RUN"]


def _model_from_main(function: str) -> tuple[str, str]:
    """(variable, default) of the DetectorFromEnv in the function's main.py."""
    tree = ast.parse((SERVERLESS / function / "nuclio" / "main.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "DetectorFromEnv":
            return tuple(arg.value for arg in node.args)  # type: ignore[return-value]
    raise AssertionError(f"{function}/nuclio/main.py builds no DetectorFromEnv")


@pytest.fixture(scope="module")
def model_classes() -> dict[str, tuple[tuple[str, ...], str]]:
    """Class names and shape type of each function's model, each loaded once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        result = {}
        for function, model in TEST_MODELS.items():
            detector = load_detector(model)
            result[function] = (tuple(detector.class_names), detector_shape_type(detector))
    return result


def test_every_function_has_cpu_and_gpu_configs():
    assert DETECTORS == sorted(TEST_MODELS)
    for function in FUNCTIONS:
        folder = SERVERLESS / function / "nuclio"
        assert (folder / "function.yaml").is_file() and (folder / "function-gpu.yaml").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_config_has_what_cvat_and_nuctl_need(path: Path):
    config = _load(path)
    function = path.parents[1].name
    gpu = path.name == "function-gpu.yaml"
    metadata = config["metadata"]
    assert NAME_RE.match(metadata["name"]) and len(metadata["name"]) <= 63
    assert metadata["namespace"] == "cvat"
    annotations = metadata["annotations"]
    assert isinstance(annotations["name"], str) and annotations["name"].strip()
    assert annotations["type"] == "detector"  # CVAT's FunctionKind
    assert annotations["framework"] in {"onnx", "pytorch"}
    assert all(isinstance(v, str) for v in annotations.values())  # annotations are strings
    spec = parse_spec(annotations["spec"])
    names = [label["name"] for label in spec]
    assert len(names) == len(set(names))  # CVAT refuses repeated labels
    assert [label["id"] for label in spec] == list(range(len(spec)))

    body = config["spec"]
    assert isinstance(body["description"], str) and body["description"].strip()
    # the package needs Python 3.11+; the base image supplies the interpreter
    assert re.fullmatch(r"python:3\.(1[1-9])", body["runtime"])
    assert body["build"]["baseImage"].startswith(f"python:{body['runtime'].split(':')[1]}")
    assert body["handler"] == "main:handler"
    assert re.fullmatch(r"\d+s", body["eventTimeout"])
    assert isinstance(body["build"]["image"], str) and body["build"]["image"]

    env = _env(config)
    assert all(isinstance(v, str) for v in env.values())  # nuclio wants string values
    variable, default = _model_from_main(function)
    assert env[variable] == default
    assert env["AUTOTRACK_MODELS"] == "/opt/nuclio/models" and env["AUTOTRACK_OFFLINE"] == "1"
    assert env["AUTOTRACK_DEVICE"] == ("cuda:0" if gpu else "cpu")

    runs = _directives(config)
    assert any("pip install" in run and "/opt/nuclio/*.whl" in run for run in runs)
    # the default model is fetched (and checked) at build time into AUTOTRACK_MODELS
    assert f"AUTOTRACK_MODELS=/opt/nuclio/models python -m autotrack.cvat.deploy.bake {default}" \
        in runs
    post = [d["value"] for d in body["build"]["directives"]["postCopy"]]
    assert any("*.whl" in value for value in post)  # the wheel is there only after the copy

    triggers = body["triggers"]
    assert list(triggers) == ["myHttpTrigger"]
    trigger = triggers["myHttpTrigger"]
    assert trigger["kind"] == "http"
    assert "maxWorkers" not in trigger  # deprecated in nuclio 1.13, removed in 1.15
    assert isinstance(trigger["numWorkers"], int) and trigger["numWorkers"] >= 1
    assert trigger["workerAvailabilityTimeoutMilliseconds"] > 0
    assert trigger["attributes"]["maxRequestBodySize"] == MAX_BODY_BYTES

    platform = body["platform"]["attributes"]
    assert platform["restartPolicy"]["name"] == "always"
    assert platform["restartPolicy"]["maximumRetryCount"] >= 1
    assert platform["mountMode"] == "volume"

    limits = body.get("resources", {}).get("limits", {})
    if gpu:
        assert limits["nvidia.com/gpu"] == 1 and trigger["numWorkers"] == 1
        pre = [d["value"] for d in body["build"]["directives"]["preCopy"] if d["kind"] == "ENV"]
        assert "NVIDIA_VISIBLE_DEVICES=all" in pre
    else:
        assert "nvidia.com/gpu" not in limits


@pytest.mark.parametrize("function", FUNCTIONS)
def test_handler_and_init_context_exist_in_main_py(function):
    tree = ast.parse((SERVERLESS / function / "nuclio" / "main.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    module, name = _load(SERVERLESS / function / "nuclio" / "function.yaml")["spec"][
        "handler"].split(":")
    assert module == "main" and name in functions
    assert [a.arg for a in functions[name].args.args] == ["context", "event"]
    assert [a.arg for a in functions["init_context"].args.args] == ["context"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_cpu_and_gpu_configs_declare_the_same_function(function):
    cpu = _load(SERVERLESS / function / "nuclio" / "function.yaml")
    gpu = _load(SERVERLESS / function / "nuclio" / "function-gpu.yaml")
    assert cpu["metadata"] == gpu["metadata"]  # GPU replaces CPU under the same name
    assert cpu["spec"]["handler"] == gpu["spec"]["handler"]


ALL_CONFIGS = sorted(SERVERLESS.glob("*/nuclio/function*.yaml"))
OPENCV_SYSTEM_LIBS = ("libgl1", "libglib2.0-0")  # libGL.so.1 and libglib-2.0.so.0


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_image_has_the_system_libraries_opencv_python_needs(path: Path):
    """Our wheel pulls opencv-python (the cv2 every peer pulls too, so one cv2 per env), whose
    cv2 loads libGL.so.1 and libglib-2.0 at import; python:3.x-slim has neither. They are
    installed by an apt-get step before any pip step, in one layer that drops apt's lists."""
    config = _load(path)
    assert "slim" in config["spec"]["build"]["baseImage"]  # what makes the step necessary
    runs = _directives(config)
    wheel = [i for i, run in enumerate(runs) if "pip install" in run and "/opt/nuclio/*.whl" in run]
    assert wheel, "the image installs our wheel"
    apt = [i for i, run in enumerate(runs) if "apt-get install" in run
           and all(lib in run.split() for lib in OPENCV_SYSTEM_LIBS)]
    assert apt, f"no apt-get install of {' '.join(OPENCV_SYSTEM_LIBS)}"
    run = runs[apt[0]]
    assert run.startswith("apt-get update && ") and "-y --no-install-recommends" in run
    assert run.endswith("&& rm -rf /var/lib/apt/lists/*")
    first_pip = min(i for i, run in enumerate(runs) if "pip install" in run)
    assert apt[0] < first_pip <= wheel[0]


def test_yolox_gpu_swaps_onnxruntime_for_the_gpu_build():
    runs = " && ".join(_directives(_load(SERVERLESS / "yolox/nuclio/function-gpu.yaml")))
    assert "pip uninstall -y onnxruntime" in runs and "onnxruntime-gpu[cuda,cudnn]" in runs
    assert runs.index("/opt/nuclio/*.whl") < runs.index("pip uninstall -y onnxruntime")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_spec_matches_the_model(path: Path, model_classes):
    names, shape_type = model_classes[path.parents[1].name]
    spec = function_yaml_spec(path)
    assert spec_problems(spec, names, shape_type) == []
    assert [label["name"] for label in spec] == list(COCO_CLASSES)  # both defaults are COCO


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_spec_text_is_what_the_label_spec_tool_prints(path: Path):
    text = _load(path)["metadata"]["annotations"]["spec"]
    assert text.rstrip("\n") == spec_json(label_spec.label_spec(COCO_CLASSES, "rectangle"))


def test_label_spec_tool_prints_json_and_a_yaml_block(capsys, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
    assert label_spec.main(["yolox-nano"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == label_spec.label_spec(COCO_CLASSES, "rectangle")
    assert label_spec.main(["yolo11n-seg.yaml", "--format", "yaml"]) == 0
    block = capsys.readouterr().out
    parsed = yaml.safe_load("annotations:\n" + block)["annotations"]["spec"]
    assert json.loads(parsed) == label_spec.label_spec(COCO_CLASSES, "mask")
    assert block.rstrip("\n") == spec_yaml_block(label_spec.label_spec(COCO_CLASSES, "mask"))


def test_label_spec_tool_checks_function_yaml(capsys, tmp_path):
    assert label_spec.main(["yolox-nano", "--check", *map(str, CONFIGS)]) == 0
    assert "matches yolox-nano" in capsys.readouterr().out
    # a segmentation model with the rectangle spec, and a spec for other classes
    assert label_spec.main(["yolo11n-seg.yaml", "--check", str(CONFIGS[0])]) == 1
    assert "mask" in capsys.readouterr().err
    other = tmp_path / "function.yaml"
    config = _load(CONFIGS[0])
    config["metadata"]["annotations"]["spec"] = spec_json(
        label_spec.label_spec(["cat", "dog"], "rectangle"))
    other.write_text(yaml.safe_dump(config))
    assert label_spec.main(["yolox-nano", "--check", str(other)]) == 1
    err = capsys.readouterr().err
    assert "2 labels" in err and "regenerate with" in err
    assert label_spec.main(["no-such-model"]) == 2


def test_label_spec_refuses_what_cvat_would_refuse():
    with pytest.raises(ValueError, match="unique"):
        label_spec.label_spec(["a", "b", "a"])
    with pytest.raises(ValueError, match="empty name"):
        label_spec.label_spec(["a", " "])
    with pytest.raises(ValueError, match="shape type"):
        label_spec.label_spec(["a"], "ellipse")
    with pytest.raises(ValueError, match="JSON"):
        parse_spec("[{")


def test_bake_model_verifies_the_registry_checksum(tmp_path, monkeypatch, capsys):
    assert bake_model.main(["yolox-nano"]) == 0  # conftest: AUTOTRACK_MODELS is the shared one
    assert str(MODELS_DIR / REGISTRY["yolox-nano"].filename) in capsys.readouterr().out
    tampered = tmp_path / REGISTRY["yolox-nano"].filename
    tampered.write_bytes(b"not the model")
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    assert bake_model.main(["yolox-nano"]) == 1
    assert "sha256" in capsys.readouterr().err
    empty = tmp_path / "empty"
    monkeypatch.setenv("AUTOTRACK_MODELS", str(empty))
    assert bake_model.main(["yolox-nano"]) == 1  # offline: names the URL and the variable
    assert "AUTOTRACK_OFFLINE" in capsys.readouterr().err


# --- AI tools: what CVAT's lambda manager and UI accept (tests/cvat_ui.py) --------------------

TRACKERS = [p for p in ALL_CONFIGS if _load(p)["metadata"]["annotations"]["type"] == "tracker"]


@pytest.mark.parametrize("path", TRACKERS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_trackers_declare_what_cvats_tracker_ui_uses(path: Path):
    """No ``supported_shape_types``: the UI lists the tracker (rectangles), the lambda manager
    sends the UI's rectangles as bare points and refuses polygons and masks (400), and wraps
    the answers back as rectangles (which the UI reads through trackedRectangleMapper)."""
    import cvat_ui

    annotations = _load(path)["metadata"]["annotations"]
    assert "supported_shape_types" not in annotations
    assert cvat_ui.supported_shape_types(annotations) is None
    assert cvat_ui.ui_lists_tracker(annotations)
    box = [10.0, 20.0, 110.0, 220.0]
    request = cvat_ui.tracker_request("img", None, shapes=[{"type": "rectangle", "points": box}])
    assert request["shapes"] == [box] and request["states"] == []
    for shape in ({"type": "polygon", "points": [1, 2, 30, 2, 30, 40]},
                  {"type": "mask", "points": [0, 4, 1, 1, 2, 2]}):
        with pytest.raises(cvat_ui.ValidationError, match="does not support shapes"):
            cvat_ui.tracker_request("img", None, shapes=[shape])
    answer = cvat_ui.tracker_answer({"shapes": [box], "states": ["state"]}, None)
    assert cvat_ui.ui_tracked_boxes(answer, 1) == [box]
