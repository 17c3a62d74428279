"""Detectors on real vtest.avi frames with the real YOLOX weights; ultralytics on a config build."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from autotrack.coco import COCO_CLASSES
from autotrack.detections import Detections
from autotrack.detectors import (
    DEFAULT_DETECTOR,
    Detector,
    YoloxOnnxDetector,
    class_filter,
    filter_detections,
    load_detector,
    nms,
)
from autotrack.errors import AutotrackError, InputError, ModelNotFoundError
from conftest import MODELS_DIR

FRAMES = (0, 50, 100, 250)
PERSON = COCO_CLASSES.index("person")


@pytest.fixture(scope="module")
def frames(vtest_video: Path) -> dict[int, np.ndarray]:
    """Frames read in order: seeking in an AVI is not guaranteed to land on the exact frame."""
    capture = cv2.VideoCapture(str(vtest_video))
    picked: dict[int, np.ndarray] = {}
    try:
        for index in range(max(FRAMES) + 1):
            ok, frame = capture.read()
            assert ok, f"vtest.avi ended before frame {index}"
            if index in FRAMES:
                picked[index] = frame
    finally:
        capture.release()
    return picked


@pytest.fixture(scope="module")
def yolox() -> YoloxOnnxDetector:
    return YoloxOnnxDetector(MODELS_DIR / "yolox_nano_416x416.onnx")


def _assert_valid(detections: Detections, frame: np.ndarray, num_classes: int) -> None:
    height, width = frame.shape[:2]
    boxes = detections.boxes
    assert boxes.dtype == np.float64 and boxes.shape == (len(detections), 4)
    assert detections.scores.dtype == np.float64 and detections.class_ids.dtype == np.int64
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all((detections.scores >= 0) & (detections.scores <= 1))
    assert np.all((detections.class_ids >= 0) & (detections.class_ids < num_classes))


@pytest.mark.parametrize("index", [50, 250])
def test_yolox_finds_people_confidently(
    yolox: YoloxOnnxDetector, frames: dict[int, np.ndarray], index: int
) -> None:
    detections = yolox.detect(frames[index])
    _assert_valid(detections, frames[index], 80)
    people = detections.select(detections.class_ids == PERSON)
    assert np.sum(people.scores >= 0.8) >= 3
    heights = people.boxes[:, 3] - people.boxes[:, 1]
    assert np.all(heights[people.scores >= 0.8] > 40)  # walkers, not specks


@pytest.mark.parametrize("index", [0, 100])
def test_yolox_sees_the_crowd_with_low_score_boxes_too(
    yolox: YoloxOnnxDetector, frames: dict[int, np.ndarray], index: int
) -> None:
    detections = yolox.detect(frames[index])
    _assert_valid(detections, frames[index], 80)
    people = detections.scores[detections.class_ids == PERSON]
    assert np.sum(people >= 0.5) >= 4 and people.max() >= 0.8
    assert detections.scores.min() >= 0.1 and np.all(np.diff(detections.scores) <= 0)


def test_yolox_is_the_default_and_fast(frames: dict[int, np.ndarray]) -> None:
    detector = load_detector()
    assert DEFAULT_DETECTOR == "yolox-nano"
    assert isinstance(detector, YoloxOnnxDetector) and isinstance(detector, Detector)
    assert detector.class_names == COCO_CLASSES and detector.input_hw == (416, 416)
    detector.detect(frames[0])  # warm-up
    start = time.perf_counter()
    for frame in frames.values():
        detector.detect(frame)
    assert (time.perf_counter() - start) / len(frames) < 0.5  # generous: shared CI cores


def test_yolox_handles_any_frame_size(
    yolox: YoloxOnnxDetector, frames: dict[int, np.ndarray]
) -> None:
    frame = frames[50]
    tall = np.ascontiguousarray(frame[:, :300])
    small = cv2.resize(frame, (96, 72))
    for image in (tall, small):
        _assert_valid(yolox.detect(image), image, 80)
    half = yolox.detect(cv2.resize(frame, (384, 288)))
    full = yolox.detect(frame)
    best_half = half.boxes[np.argmax(half.scores)] * 2
    assert np.abs(best_half - full.boxes[np.argmax(full.scores)]).max() < 12  # same walker


def test_class_filter_by_name(yolox: YoloxOnnxDetector, frames: dict[int, np.ndarray]) -> None:
    detections = yolox.detect(frames[0])
    assert set(detections.class_ids.tolist()) > {PERSON}  # also cars and the like
    wanted = class_filter(yolox.class_names, ["Person", " person "])
    assert wanted is not None and wanted.tolist() == [PERSON]
    people = filter_detections(detections, wanted)
    assert len(people) == np.sum(detections.class_ids == PERSON) > 0
    assert np.all(people.class_ids == PERSON)
    cars = class_filter(yolox.class_names, "car")
    assert cars is not None and cars.tolist() == [COCO_CLASSES.index("car")]
    assert class_filter(yolox.class_names, None) is None
    assert filter_detections(detections, None) is detections


def test_unknown_class_name_is_an_input_error() -> None:
    with pytest.raises(InputError) as info:
        class_filter(COCO_CLASSES, ["person", "persn"])
    message = str(info.value)
    assert "\n" not in message and "'persn'" in message and "person" in message


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640), np.uint8),
        np.zeros((1, 480, 640, 3), np.uint8),
        np.zeros((480, 640, 1), np.uint8),
        np.zeros((480, 640, 4), np.uint8),
        np.zeros((480, 640, 3), np.float32),
        np.zeros((0, 640, 3), np.uint8),
        np.zeros((480, 0, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
    ids=["2d", "4d", "1-channel", "4-channel", "float", "no-rows", "no-cols", "list"],
)
def test_bad_frames_are_input_errors(yolox: YoloxOnnxDetector, frame: object) -> None:
    with pytest.raises(InputError):
        yolox.detect(frame)  # type: ignore[arg-type]


def test_nms_hand_computed() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: best
            [1, 0, 11, 10],  # 1: IoU with 0 = 90 / 110 = 0.818
            [20, 20, 30, 30],  # 2: alone
            [0, 0, 10, 10],  # 3: copy of 0, another class
            [5, 0, 15, 10],  # 4: IoU with 0 = 50 / 150 = 0.333, with 1 = 60 / 140 = 0.429
        ],
        dtype=float,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    classes = np.array([0, 0, 0, 1, 0])
    assert nms(boxes, scores, 0.5).tolist() == [4, 0, 2]
    assert nms(boxes, scores, 0.5, classes).tolist() == [4, 0, 2, 3]
    assert nms(boxes, scores, 0.4).tolist() == [4, 0, 2]  # 1 goes: 0.429 with 4
    assert nms(boxes, scores, 0.85).tolist() == [4, 0, 1, 2]
    assert nms(boxes, scores, 0.3).tolist() == [4, 2]  # 0 overlaps 4 by 0.333
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).dtype == np.int64


def test_ultralytics_config_build_runs_on_a_real_frame(frames: dict[int, np.ndarray]) -> None:
    pytest.importorskip("ultralytics")
    from autotrack.detectors.ultralytics import UltralyticsDetector

    detector = UltralyticsDetector("yolo11n.yaml", imgsz=320)
    assert isinstance(detector, Detector)
    assert len(detector.class_names) == 80 and detector.class_names[0] == "person"
    detections = detector.detect(frames[0])  # random weights: any count, but well formed
    assert isinstance(detections, Detections)
    _assert_valid(detections, frames[0], 80)
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10), np.uint8))


def test_load_detector_routes_configs_to_ultralytics() -> None:
    pytest.importorskip("ultralytics")
    from autotrack.detectors.ultralytics import UltralyticsDetector

    assert isinstance(load_detector("yolo11n.yaml", min_score=0.3), UltralyticsDetector)


@pytest.mark.parametrize("name", ["yolov8n.pt", "yolo12n", "rtdetr-l.pt"])
def test_missing_ultralytics_checkpoint_fails_fast_offline(name: str) -> None:
    pytest.importorskip("ultralytics")
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        load_detector(name)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "\n" not in message and "AUTOTRACK_MODELS" in message
    assert "https://github.com/ultralytics/assets/releases" in message


def test_load_detector_rejects_what_it_cannot_decode(tmp_path: Path) -> None:
    with pytest.raises(AutotrackError, match="not a detector"):
        load_detector("vittrack")
    with pytest.raises(AutotrackError, match="neither a raw YOLOX export"):
        load_detector("nanodet-m")  # a real detector, but no decoder for its layout here
    with pytest.raises(ModelNotFoundError, match="yolox-nano"):
        load_detector("no-such-detector")
    with pytest.raises(ModelNotFoundError):
        load_detector(tmp_path / "absent.onnx")


def test_the_default_base_checkpoint_has_its_sha256(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """yolo11n.pt (finetune's default base) is named with its release URL and sha256 when it
    is missing offline, and a copy found under its name that is not that file is refused."""
    pytest.importorskip("ultralytics")
    from autotrack.detectors.ultralytics import locate
    from autotrack.models import ULTRALYTICS_CHECKPOINTS

    known = ULTRALYTICS_CHECKPOINTS["yolo11n.pt"]
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    monkeypatch.setenv("AUTOTRACK_OFFLINE", "1")
    monkeypatch.setattr("autotrack.detectors.ultralytics._weights_dir", lambda: None)
    with pytest.raises(ModelNotFoundError) as info:
        locate("yolo11n.pt")
    assert known.url in str(info.value) and known.sha256 in str(info.value)
    (tmp_path / "yolo11n.pt").write_bytes(b"not the release asset")
    with pytest.raises(ModelNotFoundError) as info:
        locate("yolo11n")
    assert "\n" not in str(info.value) and known.sha256 in str(info.value)
    other = tmp_path / "mine.pt"  # a path is the user's own file: taken as it is
    other.write_bytes(b"x")
    assert locate(str(other)) == str(other)
