"""functions/bytetrack.py as cvat-cli loads and runs it: the loader of `cvat-cli function
create-native` / `run-agent`, the agent's driver classes and its own worker jobs, 100 vtest
frames (300-399) one call per frame, following the person of tests/test_sdk_tracking.py."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import PIL.Image
import pytest

pytest.importorskip("cvat_sdk")
pytest.importorskip("cvat_cli")

import cvat_sdk.auto_annotation as cvataa
from cvat_cli._internal import agent as cvat_agent
from cvat_cli._internal import agent_driver_tracking as cvat_tracking

import test_sdk_tracking as sot_tests
from autotrack.cvat.sdk.bytetrack import ByteTrackTrackingFunction, TrackingState
from autotrack.errors import AutotrackError, InputError
from autotrack.geometry import iou_matrix
from conftest import REPO_ROOT
from test_sdk_tracking import START_NEAR, TASK_ID, _loader, _rect, load_function

agent_worker = sot_tests.agent_worker  # a fixture: cvat-cli's agent worker in this process

FILE = REPO_ROOT / "functions" / "bytetrack.py"
FIRST, COUNT = 300, 100


@pytest.fixture(scope="module")
def images(vtest_video) -> list[PIL.Image.Image]:
    return [PIL.Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            for f in sot_tests.read_frames(vtest_video, FIRST, COUNT)]


@pytest.fixture(scope="module")
def chain(images) -> list[np.ndarray | None]:
    """The person's YOLOX boxes chained by IoU >= 0.3 (None where the chain has none)."""
    from autotrack.detectors import load_detector
    from conftest import MODELS_DIR

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        detector = load_detector("yolox-nano")
    box, out = START_NEAR, []
    for image in images:
        d = detector.detect(np.asarray(image)[:, :, ::-1].copy())
        people = d.boxes[(d.class_ids == 0) & (d.scores >= 0.3)]
        ious = iou_matrix(box[None], people)[0] if len(people) else np.zeros(0)
        if len(ious) and ious.max() >= 0.3:
            box = people[int(ious.argmax())]
            out.append(box)
        else:
            out.append(None)
    assert sum(b is not None for b in out) >= 95
    return out


def _hits(boxes, chain) -> float:
    hits = [iou_matrix(np.array([b]), c[None])[0, 0] >= 0.5
            for b, c in zip(boxes[1:], chain[1:]) if c is not None]
    return sum(hits) / len(hits)


def test_spec_is_a_rectangle_tracker_for_cvat_cli() -> None:
    function = _loader(FILE, command="create-native").load()
    assert isinstance(function, ByteTrackTrackingFunction)
    assert function.spec == cvataa.TrackingFunctionSpec(supported_shape_types=["rectangle"])
    driver = cvat_agent.get_function_driver_class(function.spec)
    assert driver is cvat_tracking.AgentTrackingFunctionDriver


def test_follows_a_person_through_100_frames_in_the_agent(agent_worker, images, chain):
    function = agent_worker(FILE)
    assert isinstance(function, ByteTrackTrackingFunction)
    states = cvat_tracking._worker_job_init_tracking(TASK_ID, images[0], [_rect(START_NEAR)])
    boxes = [list(START_NEAR)]
    calls = function.tracker.detector_calls
    for image in images[1:]:
        (shape,) = cvat_tracking._worker_job_track(TASK_ID, image, states)
        assert shape is not None and shape.type == "rectangle"
        assert pickle.loads(pickle.dumps(shape)) == shape  # run-agent pickles worker output
        boxes.append(shape.points)
    assert _hits(boxes, chain) >= 0.9
    assert function.tracker.detector_calls - calls == COUNT - 1  # one per frame
    state, _ = cvat_tracking._tracking_states.retrieve(states[0], TASK_ID, images[0].size)
    assert isinstance(state, TrackingState) and len(state.text) <= 16 * 1024


def test_two_shapes_share_one_detector_call_and_two_workers_share_no_memory(images, chain):
    """Several shapes of one frame: one detector call, each its own detection. Two function
    instances handing the state (through JSON) back and forth give one instance's boxes."""
    one = load_function(FILE)
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    pp = one.preprocess_image(None, images[0])
    states = [one.init_tracking_state(context, pp, _rect(START_NEAR)),
              one.init_tracking_state(context, pp, _rect([232, 372, 290, 512]))]
    assert one.tracker.detector_calls == 1
    alone = []
    for image in images[1:30]:
        pp = one.preprocess_image(None, image)
        shapes = [one.track(context, pp, state) for state in states]
        assert shapes[0].points != shapes[1].points
        alone.append(shapes[0].points)
    assert one.tracker.detector_calls == 30

    workers = [load_function(FILE), load_function(FILE)]
    text = workers[0].init_tracking_state(
        context, workers[0].preprocess_image(None, images[0]), _rect(START_NEAR)).text
    shared = []
    for k, image in enumerate(images[1:30]):
        worker = workers[k % 2]
        state = TrackingState(json.loads(json.dumps(text)))
        shared.append(worker.track(context, worker.preprocess_image(None, image), state).points)
        text = state.text
    assert shared == alone


def test_a_lost_object_gets_its_box_or_none(images):
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    blank = PIL.Image.new("RGB", images[0].size, (90, 90, 90))
    for report_lost, expect_box in ((True, True), (False, False)):
        function = load_function(FILE, f"report_lost=bool:{str(report_lost).lower()}")
        state = function.init_tracking_state(
            context, function.preprocess_image(None, images[0]), _rect(START_NEAR))
        shape = function.track(context, function.preprocess_image(None, blank), state)
        assert (shape is not None) == expect_box and not state.found


def test_bad_shapes_states_and_parameters_are_clear_errors(images):
    function = load_function(FILE, "label=str:person", "track_buffer=int:10")
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    pp = function.preprocess_image(None, images[0])
    with pytest.raises(InputError, match="only rectangles"):
        function.init_tracking_state(context, pp, cvataa.TrackableShape(
            type="polygon", points=[1, 1, 5, 1, 5, 5]))
    with pytest.raises(InputError, match="does not overlap"):
        function.init_tracking_state(context, pp, _rect([5000, 10, 5100, 50]))
    state = function.init_tracking_state(context, pp, _rect(START_NEAR))
    envelope = json.loads(state.text)
    envelope["payload"]["label"] = "car"
    tampered = TrackingState(json.dumps(envelope))
    with pytest.raises(InputError, match="digest"):
        function.track(context, function.preprocess_image(None, images[1]), tampered)
    with pytest.raises(AutotrackError, match="not a class"):
        load_function(FILE, "label=str:unicorn")
    with pytest.raises(AutotrackError, match="track_buffer"):
        load_function(FILE, "track_buffer=int:-1")
    with pytest.raises(TypeError, match="model"):
        load_function(FILE, "model=str:yolox-nano")
