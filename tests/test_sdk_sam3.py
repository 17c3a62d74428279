"""functions/sam3.py as cvat-cli runs it: its parser, its loader, cvat-sdk's annotate_task and
its label/shape validation, with SAM3's tiny architecture and seeded random weights.

The label names given with ``-p labels=...`` are the prompts; the uploaded masks must decode
(with cvat-sdk's own decoder) to exactly the pixels SAM3 found for those prompts.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

pytest.importorskip("torch")
pytest.importorskip("sam3")
pytest.importorskip("cvat_sdk")
pytest.importorskip("cvat_cli")

import cvat_sdk.auto_annotation as cvataa  # noqa: E402
from cvat_sdk.masks import decode_mask  # noqa: E402

from autotrack.cvat.sdk.detection import pil_to_bgr  # noqa: E402
from autotrack.errors import AutotrackError, InputError, ModelNotFoundError  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402
from test_sdk_functions import (  # noqa: E402
    FRAME_INDEX,
    _cli,
    _context,
    load_function,
    run_cvat_cli,
    task_labels,
)

SAM3_FILE = REPO_ROOT / "functions" / "sam3.py"
LABELS = ("bed", "person")
TINY = ("labels=str:bed,person", "checkpoint=str:random", "config=str:tiny",
        "min_score=float:0")


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch):
    for variable in ("AUTOTRACK_SAM3_CHECKPOINT", "AUTOTRACK_SAM3_BPE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def frame(bedroom_dir: Path) -> PIL.Image.Image:
    """A real bedroom frame (reduced) as cvat-sdk hands it to a function: RGB PIL."""
    image = cv2.imread(str(bedroom_dir / f"{FRAME_INDEX:05d}.jpg"))
    small = cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA)
    return PIL.Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def function():
    return load_function(SAM3_FILE, *TINY)


def _params(*extra: str) -> list[str]:
    return [arg for param in (*TINY, *extra) for arg in ("-p", param)]


def test_spec_declares_the_label_names_as_mask_labels(function):
    spec = function.spec
    assert isinstance(spec, cvataa.DetectionFunctionSpec)
    assert [(label.name, label.id, label.type) for label in spec.labels] == [
        ("bed", 0, "mask"), ("person", 1, "mask")]
    assert function.detector.class_names == LABELS


def test_masks_through_cvat_cli_are_the_prompts_instances(monkeypatch, function, frame):
    labels = task_labels(LABELS, "mask")
    seen = []
    encoder = function.detector.model.backbone.language_backbone
    hook = encoder.register_forward_pre_hook(lambda module, args: seen.append(list(args[0])))
    try:
        expected = function.detector.detect(pil_to_bgr(frame))
    finally:
        hook.remove()
    assert seen == [["bed"], ["person"]]  # the label names, one grounding pass each
    # cvat-cli builds its own function from the same parameters (same seed, same weights)
    shapes = run_cvat_cli(monkeypatch, _cli(SAM3_FILE, *_params(), "--conf-threshold", "0"),
                          labels, frame)
    assert len(shapes) == len(expected) > 0
    by_label = {label.id: name for label, name in zip(labels, LABELS)}
    got = set()
    for shape in shapes:
        assert shape.type.value == "mask" and shape.frame == FRAME_INDEX
        assert 0 <= shape.score <= 1
        bitmap = decode_mask(shape.points, image_width=frame.width, image_height=frame.height)
        got.add((by_label[shape.label_id], bitmap.astype(bool).tobytes()))
    assert got == {(LABELS[c], m.tobytes()) for c, m in zip(expected.class_ids, expected.masks)}


def test_polygons_with_conv_mask_to_poly(monkeypatch, frame):
    argv = _cli(SAM3_FILE, *_params(), "--conf-threshold", "0", "--conv-mask-to-poly")
    shapes = run_cvat_cli(monkeypatch, argv, task_labels(LABELS, "polygon"), frame)
    assert shapes and {shape.type.value for shape in shapes} == {"polygon"}
    for shape in shapes:
        xy = np.asarray(shape.points).reshape(-1, 2)
        assert len(xy) >= 3 and np.all(xy >= 0)
        assert np.all(xy <= [frame.width, frame.height])


def test_conf_threshold_is_the_cut(function, frame):
    everything = function.detect(_context(conf_threshold=0.0), frame)
    scores = sorted(shape.score for shape in everything)
    cut = scores[len(scores) // 2]
    above = function.detect(_context(conf_threshold=cut), frame)
    assert 0 < len(above) < len(everything) and all(s.score >= cut for s in above)


def test_labels_missing_from_the_task_are_refused_by_cvat_sdk(monkeypatch, frame):
    with pytest.raises(cvataa.BadFunctionError, match="not in dataset"):
        run_cvat_cli(monkeypatch, _cli(SAM3_FILE, *_params()), task_labels(["bed"], "mask"),
                     frame)


def test_bad_parameters_are_clear_errors():
    with pytest.raises(AutotrackError, match="labels=str:"):
        load_function(SAM3_FILE, "checkpoint=str:random", "config=str:tiny")
    with pytest.raises(InputError, match="twice"):
        load_function(SAM3_FILE, "labels=str:bed,bed", "checkpoint=str:random",
                      "config=str:tiny")
    with pytest.raises(ModelNotFoundError, match="AUTOTRACK_SAM3_CHECKPOINT"):
        load_function(SAM3_FILE, "labels=str:bed")  # offline, no checkpoint anywhere
    with pytest.raises(AutotrackError, match="unknown SAM3 config"):
        load_function(SAM3_FILE, "labels=str:bed", "checkpoint=str:random", "config=str:big")
    with pytest.raises(TypeError, match="colour"):
        load_function(SAM3_FILE, *TINY, "colour=str:red")
