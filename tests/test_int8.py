"""The int8 YOLOX-Nano (issue 17): built from the shared float model into a models folder of
its own, found by its registry name, close to the float model on real vtest frames, never
in place of it; a missing one names the command that builds it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy.optimize import linear_sum_assignment

from conftest import MODELS_DIR, REPO_ROOT
from autotrack.detectors import YoloxOnnxDetector, load_detector
from autotrack.detectors.quantize import INT8_MODEL, calibration_frames, quantize_yolox
from autotrack.errors import ModelNotFoundError
from autotrack.geometry import iou_matrix
from autotrack.models import BUILT, REGISTRY, resolve_model, sha256_of
from autotrack.video import FrameSource

SPEC = BUILT[INT8_MODEL]


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory: pytest.TempPathFactory, vtest_video: Path) -> Path:
    folder = tmp_path_factory.mktemp("models")
    quantize_yolox(MODELS_DIR / REGISTRY["yolox-nano"].filename,
                   calibration_frames(vtest_video), folder / SPEC.filename)
    return folder


def test_build_is_reproducible_and_separate(int8_folder):
    built = int8_folder / SPEC.filename
    assert sorted(p.name for p in int8_folder.iterdir()) == [SPEC.filename]  # no leftovers
    assert INT8_MODEL not in REGISTRY and SPEC.url == "" and SPEC.license == "Apache-2.0"
    assert "tools/quantize_yolox.py" in SPEC.source
    if ort.__version__ == "1.32.0":  # the version the registry's sha256 was built with
        assert sha256_of(built) == SPEC.sha256
    assert sha256_of(MODELS_DIR / REGISTRY["yolox-nano"].filename) == REGISTRY["yolox-nano"].sha256


def test_int8_is_found_by_name_and_finds_what_the_float_model_finds(
        int8_folder, vtest_video, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_MODELS", f"{MODELS_DIR}:{int8_folder}")
    assert resolve_model(INT8_MODEL) == int8_folder / SPEC.filename
    int8 = load_detector(INT8_MODEL, threads=1)
    assert isinstance(int8, YoloxOnnxDetector)
    float_model = load_detector("yolox-nano", threads=1)
    frames = [f for _, f in itertools.islice(FrameSource(vtest_video).sampled(10), 200)
              if f is not None]
    found = matched = 0
    ious = []
    for frame in frames:
        reference, got = float_model.detect(frame), int8.detect(frame)
        boxes = reference.boxes[reference.scores >= 0.5]
        found += len(boxes)
        if len(boxes) and len(got):
            overlap = iou_matrix(boxes, got.boxes)
            rows, cols = linear_sum_assignment(-overlap)
            good = overlap[rows, cols] >= 0.5
            matched += int(good.sum())
            ious += overlap[rows, cols][good].tolist()
    assert found > 100
    assert matched / found >= 0.9  # measured 0.96 over all of vtest
    assert np.mean(ious) >= 0.8  # measured 0.86


def test_a_missing_int8_model_names_its_build_command():
    with pytest.raises(ModelNotFoundError, match="tools/quantize_yolox.py"):
        resolve_model(INT8_MODEL)
    assert (REPO_ROOT / "tools" / "quantize_yolox.py").is_file()
