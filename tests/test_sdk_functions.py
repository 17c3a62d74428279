"""functions/*.py as cvat-cli runs them: its parser, its loader, cvat-sdk's annotate_task.

Only the CVAT server is stood in for: cvat-cli's ``make_client_from_cli`` returns a recording
client and the driver's ``TaskDataset`` serves real vtest.avi frames with the task's labels.
Everything between ``cvat-cli task auto-annotate ...`` and the upload request is the installed
cvat-cli and cvat-sdk code, including the driver's ``_AnnotationMapper``, which rejects any shape
whose label id or type disagrees with the function's spec or the task's labels.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import PIL.Image
import pytest

pytest.importorskip("cvat_sdk")
pytest.importorskip("cvat_cli")

import cvat_cli.__main__ as cvat_cli_main  # noqa: E402
import cvat_sdk.auto_annotation as cvataa  # noqa: E402
import cvat_sdk.auto_annotation.driver as cvat_driver  # noqa: E402
from cvat_cli._internal import common as cvat_cli_common  # noqa: E402
from cvat_cli._internal.commands_all import COMMANDS  # noqa: E402
from cvat_sdk import models  # noqa: E402
from cvat_sdk.masks import decode_mask  # noqa: E402

from autotrack.coco import COCO_CLASSES  # noqa: E402
from autotrack.cvat.sdk.detection import DEFAULT_CONF, DetectorFunction  # noqa: E402
from autotrack.errors import AutotrackError, InputError  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

YOLOX_FILE = REPO_ROOT / "functions" / "yolox.py"
ULTRALYTICS_FILE = REPO_ROOT / "functions" / "ultralytics.py"
FRAME_INDEX = 50
TASK_ID = 7


@pytest.fixture(scope="module")
def frame50(vtest_video: Path) -> PIL.Image.Image:
    """vtest.avi frame 50 as cvat-sdk hands it to a function: an RGB PIL image."""
    capture = cv2.VideoCapture(str(vtest_video))
    try:
        for _ in range(FRAME_INDEX + 1):
            ok, frame = capture.read()
            assert ok
    finally:
        capture.release()
    return PIL.Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _parse(argv: list[str]) -> argparse.Namespace:
    """cvat-cli's own argument parser, built the way cvat_cli.__main__.main builds it."""
    parser = argparse.ArgumentParser()
    cvat_cli_common.configure_common_arguments(parser)
    COMMANDS.configure_parser(parser)
    return parser.parse_args(argv)


def load_function(function_file: Path, *params: str) -> DetectorFunction:
    """The function object cvat-cli makes of `--function-file F -p name=type:value ...`:
    its parser turns -p into a dict and its FunctionLoader imports F and calls create(**dict)."""
    argv = ["task", "auto-annotate", str(TASK_ID), "--function-file", str(function_file)]
    for param in params:
        argv += ["-p", param]
    args = _parse(argv)
    loader = cvat_cli_common.FunctionLoader(
        args.function_module, args.function_file, args.function_parameters
    )
    return loader.load()


def task_labels(names, label_type: str) -> list[models.Label]:
    """Labels as a CVAT task has them; ids differ from the function's to show the remapping."""
    return [
        models.Label(name=name, id=1000 + i, type=label_type, attributes=[], sublabels=[])
        for i, name in enumerate(names)
    ]


class _RecordingClient:
    """What cvat-cli's build_client and cvat-sdk's annotate_task use of a cvat_sdk Client."""

    def __init__(self, record_upload) -> None:
        self.logger = logging.getLogger("test_sdk_functions")
        self.api_client = SimpleNamespace(default_headers={"User-Agent": "test"})
        self.tasks = SimpleNamespace(api=SimpleNamespace(partial_update_annotations=record_upload))

    def check_server_version(self, fail_if_unsupported: bool = True) -> None:
        pass

    def __enter__(self) -> _RecordingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def run_cvat_cli(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    labels: list[models.Label],
    image: PIL.Image.Image,
) -> list[models.LabeledShapeRequest]:
    """Runs `cvat-cli <argv>` and returns the shapes it uploads to the task."""
    uploads: list[models.PatchedLabeledDataRequest] = []

    def record_upload(action, task_id, *, patched_labeled_data_request):
        assert (action, task_id) == ("create", TASK_ID)
        uploads.append(patched_labeled_data_request)

    fake_client = _RecordingClient(record_upload)
    sample = SimpleNamespace(
        frame_index=FRAME_INDEX,
        frame_name=f"frame_{FRAME_INDEX:06d}.jpg",
        media=SimpleNamespace(load_image=lambda: image.copy()),
    )

    def task_dataset(client, task_id, *, load_annotations):
        assert client is fake_client and task_id == TASK_ID and not load_annotations
        return SimpleNamespace(labels=labels, samples=[sample])

    monkeypatch.setattr(cvat_cli_common, "make_client_from_cli", lambda *a, **k: fake_client)
    monkeypatch.setattr(cvat_driver, "TaskDataset", task_dataset)
    logger = logging.getLogger(cvat_cli_main.__name__)
    handlers = list(logger.handlers)
    try:
        assert cvat_cli_main.main(argv) == 0
    finally:
        logger.handlers[:] = handlers  # main() adds a stderr handler on every call
    assert len(uploads) == 1
    assert not uploads[0].tags
    return list(uploads[0].shapes)


def _cli(function_file: Path, *extra: str) -> list[str]:
    return ["task", "auto-annotate", str(TASK_ID), "--function-file", str(function_file), *extra]


def _context(conf_threshold=None, conv_mask_to_poly=False) -> cvataa.DetectionFunctionContext:
    """The context class cvat-sdk's driver and cvat-cli's agent construct for every frame."""
    return cvat_driver._DetectionFunctionContextImpl(
        frame_name="frame_000050.jpg",
        conf_threshold=conf_threshold,
        conv_mask_to_poly=conv_mask_to_poly,
    )


def _assert_inside(shape: models.LabeledShapeRequest, image: PIL.Image.Image) -> None:
    xy = np.asarray(shape.points, dtype=float).reshape(-1, 2)
    assert np.all(xy >= 0) and np.all(xy[:, 0] <= image.width) and np.all(xy[:, 1] <= image.height)


# --- YOLOX ---------------------------------------------------------------------------------


def test_yolox_file_spec_declares_coco_rectangle_labels() -> None:
    function = load_function(YOLOX_FILE)
    spec = function.spec
    assert isinstance(spec, cvataa.DetectionFunctionSpec)
    assert [label.name for label in spec.labels] == list(COCO_CLASSES)
    assert [label.id for label in spec.labels] == list(range(80))
    assert all(isinstance(label, models.PatchedLabelRequest) for label in spec.labels)
    assert {label.type for label in spec.labels} == {"rectangle"}


def test_yolox_finds_people_on_vtest_through_cvat_cli(monkeypatch, frame50) -> None:
    labels = task_labels(["person"], "rectangle")
    shapes = run_cvat_cli(
        monkeypatch, _cli(YOLOX_FILE, "-p", "classes=str:person", "-p", "device=str:cpu"),
        labels, frame50,
    )
    assert len(shapes) >= 3
    for shape in shapes:
        assert shape.type.value == "rectangle" and shape.label_id == labels[0].id
        assert shape.frame == FRAME_INDEX and shape.source == "auto"
        assert DEFAULT_CONF <= shape.score <= 1  # no --conf-threshold: the default applies
        x1, y1, x2, y2 = shape.points
        assert x2 > x1 and y2 > y1
        _assert_inside(shape, frame50)


def test_conf_threshold_is_honoured_and_higher_gives_a_subset(frame50) -> None:
    function = load_function(YOLOX_FILE, "min_score=float:0.05")
    found = {}
    for threshold in (0.1, 0.3, 0.6, 0.85):
        shapes = function.detect(_context(conf_threshold=threshold), frame50)
        assert all(shape.score >= threshold for shape in shapes)
        found[threshold] = {(s.label_id, tuple(s.points), s.score) for s in shapes}
    thresholds = sorted(found)
    for low, high in zip(thresholds, thresholds[1:]):
        assert found[high] <= found[low]
    assert len(found[0.1]) > len(found[0.85]) > 0
    # None means the function's own default, and conf changes that default.
    default = {(s.label_id, tuple(s.points), s.score) for s in function.detect(_context(), frame50)}
    assert default == {d for d in found[0.1] if d[2] >= DEFAULT_CONF}


def test_conf_threshold_from_the_command_line(monkeypatch, frame50) -> None:
    labels = task_labels(["person"], "rectangle")
    argv = _cli(YOLOX_FILE, "-p", "classes=str:person", "--conf-threshold", "0.8")
    shapes = run_cvat_cli(monkeypatch, argv, labels, frame50)
    assert shapes and all(shape.score >= 0.8 for shape in shapes)


def test_all_labels_need_a_task_label_unless_unmatched_are_allowed(monkeypatch, frame50) -> None:
    labels = task_labels(["person", "car"], "any")
    with pytest.raises(cvataa.BadFunctionError, match="not in dataset"):
        run_cvat_cli(monkeypatch, _cli(YOLOX_FILE), labels, frame50)
    shapes = run_cvat_cli(
        monkeypatch, _cli(YOLOX_FILE, "--allow-unmatched-labels", "--conf-threshold", "0.3"),
        labels, frame50,
    )
    assert {shape.label_id for shape in shapes} <= {label.id for label in labels}
    assert sum(shape.label_id == labels[0].id for shape in shapes) >= 3


def test_any_pil_mode_is_accepted(frame50) -> None:
    function = load_function(YOLOX_FILE, "classes=str:person")
    gray = function.detect(_context(conf_threshold=0.5), frame50.convert("L"))
    assert all(shape.type.value == "rectangle" for shape in gray)


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(InputError, match="did you mean person"):
        load_function(YOLOX_FILE, "classes=str:persn")
    with pytest.raises(AutotrackError, match="does not segment"):
        load_function(YOLOX_FILE, "masks=bool:true")
    with pytest.raises(AutotrackError, match="conf must be between"):
        load_function(YOLOX_FILE, "conf=float:5")
    with pytest.raises(TypeError, match="colour"):
        load_function(YOLOX_FILE, "colour=str:red")
    with pytest.raises(AutotrackError, match="functions/yolox.py"):
        load_function(ULTRALYTICS_FILE, "model=str:yolox-nano")


# --- ultralytics (random weights built offline from configs) -------------------------------


def test_ultralytics_boxes_through_cvat_cli(monkeypatch, frame50) -> None:
    pytest.importorskip("ultralytics")
    # Random weights score every box about 1.6e-4, so the floor and the threshold go to zero.
    argv = _cli(ULTRALYTICS_FILE, "-p", "model=str:yolo11n.yaml", "-p", "device=str:cpu",
                "-p", "min_score=float:0", "--conf-threshold", "0")
    labels = task_labels(COCO_CLASSES, "rectangle")
    shapes = run_cvat_cli(monkeypatch, argv, labels, frame50)
    assert shapes
    ids = {label.id for label in labels}
    for shape in shapes:
        assert shape.type.value == "rectangle" and shape.label_id in ids
        assert len(shape.points) == 4 and 0 <= shape.score <= 1
        _assert_inside(shape, frame50)


def test_ultralytics_default_model_and_wrong_family() -> None:
    pytest.importorskip("ultralytics")
    with pytest.raises(AutotrackError, match="yolo11n.pt"):  # offline: no weights, named file
        load_function(ULTRALYTICS_FILE)
    with pytest.raises(AutotrackError, match="functions/ultralytics.py"):
        load_function(YOLOX_FILE, "model=str:yolo11n.yaml")


def test_ultralytics_segmentation_gives_masks(monkeypatch, frame50) -> None:
    pytest.importorskip("ultralytics")
    params = ["-p", "model=str:yolo11n-seg.yaml", "-p", "min_score=float:0"]
    function = load_function(ULTRALYTICS_FILE, *params[1::2])
    assert {label.type for label in function.spec.labels} == {"mask"}
    labels = task_labels(COCO_CLASSES, "mask")
    shapes = run_cvat_cli(
        monkeypatch, _cli(ULTRALYTICS_FILE, *params, "--conf-threshold", "0"), labels, frame50
    )
    assert shapes
    for shape in shapes:
        assert shape.type.value == "mask"
        bitmap = decode_mask(shape.points, image_width=frame50.width, image_height=frame50.height)
        assert bitmap.any()
    # Random weights score under the default floor of 0.01: no detections, no masks, no shapes.
    nothing = load_function(ULTRALYTICS_FILE, "model=str:yolo11n-seg.yaml")
    assert nothing.detect(_context(conf_threshold=0), frame50) == []
    boxes_only = load_function(ULTRALYTICS_FILE, *params[1::2], "masks=bool:false")
    assert {label.type for label in boxes_only.spec.labels} == {"rectangle"}


def test_ultralytics_segmentation_gives_polygons_with_conv_mask_to_poly(
    monkeypatch, frame50
) -> None:
    pytest.importorskip("ultralytics")
    argv = _cli(ULTRALYTICS_FILE, "-p", "model=str:yolo11n-seg.yaml", "-p", "min_score=float:0",
                "--conf-threshold", "0", "--conv-mask-to-poly")
    labels = task_labels(COCO_CLASSES, "polygon")
    shapes = run_cvat_cli(monkeypatch, argv, labels, frame50)
    assert shapes
    for shape in shapes:
        assert shape.type.value == "polygon"
        assert len(shape.points) >= 6 and len(shape.points) % 2 == 0
        _assert_inside(shape, frame50)


# --- the validator the tests rely on does reject bad output --------------------------------


def test_cvat_sdk_mapper_rejects_wrong_label_ids_and_types() -> None:
    function = load_function(YOLOX_FILE, "classes=str:person,car")
    labels = task_labels(["person", "car"], "rectangle")

    def mapper(conv_mask_to_poly=False):
        return cvat_driver._AnnotationMapper(
            logging.getLogger("test"), function.spec.labels, labels,
            allow_unmatched_labels=False, conv_mask_to_poly=conv_mask_to_poly,
        )

    person = COCO_CLASSES.index("person")
    good = cvataa.rectangle(person, [1.0, 2.0, 30.0, 40.0], score=0.9)
    _, shapes = mapper().validate_and_remap([good], FRAME_INDEX)
    assert shapes[0].label_id == labels[0].id
    with pytest.raises(cvataa.BadFunctionError, match="unknown label ID"):
        mapper().validate_and_remap([cvataa.rectangle(5, [1.0, 2.0, 3.0, 4.0])], 0)
    with pytest.raises(cvataa.BadFunctionError, match="type 'polygon'"):
        mapper().validate_and_remap([cvataa.polygon(person, [1.0, 2, 3, 4, 5, 1])], 0)
    with pytest.raises(cvataa.BadFunctionError, match="has type 'rectangle' in the function"):
        cvat_driver._AnnotationMapper(
            logging.getLogger("test"), function.spec.labels, task_labels(["person", "car"], "mask"),
            allow_unmatched_labels=False, conv_mask_to_poly=False,
        )


def test_spec_and_output_suit_cvat_cli_agent(frame50) -> None:
    """`cvat-cli function create-native` registers the spec; `run-agent` pickles the output
    back from its worker processes."""
    import pickle

    from cvat_cli._internal.agent import get_function_driver_class

    function = load_function(YOLOX_FILE, "classes=str:person")
    driver = get_function_driver_class(function.spec)
    assert driver.FUNCTION_KIND == "detector"
    assert driver.get_remote_function_fields(function.spec) == {
        "labels_v2": [{"name": "person", "attributes": [], "type": "rectangle"}]
    }
    shapes = function.detect(_context(conf_threshold=0.5), frame50)
    assert pickle.loads(pickle.dumps(shapes)) == shapes
