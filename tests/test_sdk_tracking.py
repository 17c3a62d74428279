"""functions/vittrack.py and functions/nanotrack.py as cvat-cli loads and runs them.

The files are loaded by cvat-cli's own argument parser and ``FunctionLoader`` (what
`cvat-cli function create-native` and `run-agent` do), the spec goes through cvat-cli's agent
driver classes, and tracking runs through the agent's own worker jobs
(``_worker_init``, ``_worker_job_init_tracking``, ``_worker_job_track``), which keep the states
in the worker and check the output shapes' types. The reference is a chain of YOLOX person
boxes on vtest.avi frames 300-329, starting from the person near (315, 211, 347, 295).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

pytest.importorskip("cvat_sdk")
pytest.importorskip("cvat_cli")

import cvat_sdk.auto_annotation as cvataa  # noqa: E402
from cvat_cli._internal import agent as cvat_agent  # noqa: E402
from cvat_cli._internal import agent_driver as cvat_agent_driver  # noqa: E402
from cvat_cli._internal import agent_driver_tracking as cvat_tracking  # noqa: E402
from cvat_cli._internal import common as cvat_cli_common  # noqa: E402
from cvat_cli._internal.commands_all import COMMANDS  # noqa: E402

from autotrack.cvat.sdk.tracking import (  # noqa: E402
    DEFAULT_MIN_SCORE,
    SotTrackingFunction,
    TrackingState,
)
from autotrack.detectors import DEFAULT_DETECTOR, load_detector  # noqa: E402
from autotrack.errors import AutotrackError, InputError  # noqa: E402
from autotrack.geometry import iou_matrix  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

FILES = {kind: REPO_ROOT / "functions" / f"{kind}.py" for kind in ("vittrack", "nanotrack")}
FIRST_FRAME = 300
N_FRAMES = 30
START_NEAR = np.array([315.0, 211.0, 347.0, 295.0])
TASK_ID = 7
FUNCTION_ID = 3


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cvat_cli_common.configure_common_arguments(parser)
    COMMANDS.configure_parser(parser)
    return parser.parse_args(argv)


def _loader(function_file: Path, *params: str, command: str = "run-agent"):
    """cvat-cli's FunctionLoader for `cvat-cli function <command> ... --function-file F -p ...`."""
    if command == "run-agent":
        argv = ["function", "run-agent", str(FUNCTION_ID)]
    else:
        argv = ["function", "create-native", "SOT"]
    argv += ["--function-file", str(function_file)]
    for param in params:
        argv += ["-p", param]
    args = _parse(argv)
    return cvat_cli_common.FunctionLoader(
        args.function_module, args.function_file, args.function_parameters
    )


def load_function(function_file: Path, *params: str) -> SotTrackingFunction:
    return _loader(function_file, *params).load()


def read_frames(video: Path, first: int, count: int) -> list[np.ndarray]:
    """``count`` BGR frames of ``video`` from frame ``first`` on."""
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        out = []
        for _ in range(count):
            ok, frame = capture.read()
            assert ok
            out.append(frame)
    finally:
        capture.release()
    return out


@pytest.fixture(scope="module")
def frames(vtest_video: Path) -> list[np.ndarray]:
    return read_frames(vtest_video, FIRST_FRAME, N_FRAMES)


@pytest.fixture(scope="module")
def images(frames) -> list[PIL.Image.Image]:
    """The frames as cvat-cli hands them to a function: RGB PIL images."""
    return [PIL.Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]


@pytest.fixture(scope="module")
def yolox_chain(frames) -> np.ndarray:
    """(N, 4) YOLOX person boxes, each the best IoU match of the previous one."""
    with pytest.MonkeyPatch.context() as mp:  # module fixture: set the registry env here too
        from conftest import MODELS_DIR

        mp.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        mp.setenv("AUTOTRACK_OFFLINE", "1")
        detector = load_detector(DEFAULT_DETECTOR, min_score=0.3, device="cpu")
        box, chain = START_NEAR, []
        for frame in frames:
            detections = detector.detect(frame)
            people = detections.boxes[detections.class_ids == 0]
            ious = iou_matrix(box[None], people)[0]
            assert ious.max() > 0.3, "the YOLOX chain broke"  # one step jitters to 0.45
            box = people[int(np.argmax(ious))]
            chain.append(box)
    chain = np.asarray(chain, dtype=np.float64)
    assert iou_matrix(START_NEAR[None], chain[:1])[0, 0] > 0.9
    return chain


@pytest.fixture
def agent_worker(monkeypatch):
    """Runs cvat-cli's agent worker initialisation in this process; returns a starter."""
    counter = iter(range(10**6))
    monkeypatch.setattr(cvat_agent_driver, "_current_function", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_states", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_state_id_generator", None, raising=False)

    def start(function_file: Path, *params: str):
        cvat_agent._worker_init(_loader(function_file, *params), lambda: f"state-{next(counter)}")
        return cvat_agent_driver.worker_current_function()

    return start


def _rect(box) -> cvataa.TrackableShape:
    return cvataa.TrackableShape(type="rectangle", points=[float(v) for v in box])


# --- spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FILES))
def test_spec_is_a_rectangle_tracker_for_cvat_cli(kind) -> None:
    function = _loader(FILES[kind], command="create-native").load()
    assert isinstance(function, SotTrackingFunction) and function.kind == kind
    spec = function.spec
    assert isinstance(spec, cvataa.TrackingFunctionSpec)
    assert spec == cvataa.TrackingFunctionSpec(supported_shape_types=["rectangle"])
    assert spec.supported_shape_types == frozenset({"rectangle"})
    driver = cvat_agent.get_function_driver_class(spec)
    assert driver is cvat_tracking.AgentTrackingFunctionDriver
    assert driver.FUNCTION_KIND == "tracker"
    assert driver.get_remote_function_fields(spec) == {"supported_shape_types": ["rectangle"]}
    # run-agent refuses a registered function that wants shape types this one lacks.
    instance = driver(None, None, spec)
    instance.validate_function_compatibility({"supported_shape_types": ["rectangle"]})
    with pytest.raises(cvat_agent_driver.IncompatibleFunctionError, match="'mask'"):
        instance.validate_function_compatibility({"supported_shape_types": ["rectangle", "mask"]})


# --- tracking through the agent's worker jobs ---------------------------------------------


@pytest.mark.parametrize("kind", sorted(FILES))
def test_follows_a_person_through_the_cvat_cli_agent(kind, agent_worker, images,
                                                     yolox_chain) -> None:
    function = agent_worker(FILES[kind])
    assert isinstance(function, SotTrackingFunction)
    states = cvat_tracking._worker_job_init_tracking(TASK_ID, images[0], [_rect(yolox_chain[0])])
    assert len(states) == 1
    ious = []
    for image, reference in zip(images[1:], yolox_chain[1:]):
        (shape,) = cvat_tracking._worker_job_track(TASK_ID, image, states)
        assert shape is not None, "lost a person the detector sees"
        assert shape.type == "rectangle" and len(shape.points) == 4
        x1, y1, x2, y2 = shape.points
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        assert pickle.loads(pickle.dumps(shape)) == shape  # run-agent pickles worker output
        ious.append(iou_matrix(np.array([shape.points]), reference[None])[0, 0])
    ious = np.asarray(ious)
    assert len(ious) == N_FRAMES - 1
    assert np.mean(ious >= 0.5) >= 0.9, np.round(ious, 2)
    # The agent kept our state object in the worker and handed it back on every call.
    state, shape_type = cvat_tracking._tracking_states.retrieve(
        states[0], TASK_ID, images[0].size)
    assert isinstance(state, TrackingState) and shape_type == "rectangle"
    assert state.sot.step == N_FRAMES - 1 and not state.lost
    assert function.tracker.reinits == 0


def test_two_shapes_at_once_and_direct_calls_agree(agent_worker, images, yolox_chain) -> None:
    """Several shapes share one preprocessed frame; each keeps its own session."""
    function = agent_worker(FILES["vittrack"])
    other = [100.0, 100.0, 140.0, 200.0]
    states = cvat_tracking._worker_job_init_tracking(
        TASK_ID, images[0], [_rect(yolox_chain[0]), _rect(other)])
    assert len(set(states)) == 2
    via_agent = [cvat_tracking._worker_job_track(TASK_ID, image, states)[0]
                 for image in images[1:6]]
    direct = load_function(FILES["vittrack"])
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    pp = direct.preprocess_image(cvat_tracking._TrackingFunctionContextImpl(), images[0])
    state = direct.init_tracking_state(context, pp, _rect(yolox_chain[0]))
    for image, expected in zip(images[1:6], via_agent):
        pp = direct.preprocess_image(cvat_tracking._TrackingFunctionContextImpl(), image)
        assert direct.track(context, pp, state) == expected
    assert function is not direct


def test_session_eviction_rebuilds_from_state(images, yolox_chain) -> None:
    """With no live sessions kept, every update re-initialises from the in-band template."""
    function = load_function(FILES["vittrack"], "max_sessions=int:0")
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    pp0 = function.preprocess_image(None, images[0])
    state = function.init_tracking_state(context, pp0, _rect(yolox_chain[0]))
    ious = []
    for image, reference in zip(images[1:11], yolox_chain[1:11]):
        shape = function.track(context, function.preprocess_image(None, image), state)
        assert shape is not None
        ious.append(iou_matrix(np.array([shape.points]), reference[None])[0, 0])
    assert function.tracker.reinits == 10
    assert np.mean(np.asarray(ious) >= 0.5) >= 0.8, np.round(ious, 2)


# --- lost objects, bad input, parameters ---------------------------------------------------


def test_low_score_is_reported_as_lost(images, yolox_chain) -> None:
    function = load_function(FILES["vittrack"], "min_score=float:1.0")
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    state = function.init_tracking_state(
        context, function.preprocess_image(None, images[0]), _rect(yolox_chain[0]))
    assert function.track(context, function.preprocess_image(None, images[1]), state) is None
    assert state.lost and state.score < 1.0 and state.sot.step == 1  # the state still moved on
    # The default threshold on a blank frame: nothing to follow.
    default = load_function(FILES["vittrack"])
    assert default.min_score == DEFAULT_MIN_SCORE
    state = default.init_tracking_state(
        context, default.preprocess_image(None, images[0]), _rect(yolox_chain[0]))
    blank = PIL.Image.new("RGB", images[0].size, (128, 128, 128))
    assert default.track(context, default.preprocess_image(None, blank), state) is None
    assert state.lost and state.score < DEFAULT_MIN_SCORE


def test_preprocess_accepts_any_pil_mode(images) -> None:
    function = load_function(FILES["nanotrack"])
    rgb = function.preprocess_image(None, images[0])
    assert rgb.shape == (images[0].height, images[0].width, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., ::-1], np.asarray(images[0]))
    gray = function.preprocess_image(None, images[0].convert("L"))
    assert gray.shape == rgb.shape


def test_bad_shapes_and_parameters_are_clear_errors(images) -> None:
    function = load_function(FILES["vittrack"])
    context = cvat_tracking._TrackingFunctionShapeContextImpl(original_shape_type="rectangle")
    pp = function.preprocess_image(None, images[0])
    with pytest.raises(InputError, match="only rectangles"):
        function.init_tracking_state(
            context, pp, cvataa.TrackableShape(type="polygon", points=[1, 1, 5, 1, 5, 5]))
    with pytest.raises(InputError, match="4 points"):
        function.init_tracking_state(context, pp, cvataa.TrackableShape(type="rectangle",
                                                                        points=[1, 2, 3]))
    with pytest.raises(InputError, match="x2 > x1"):
        function.init_tracking_state(context, pp, _rect([10, 10, 10, 50]))
    with pytest.raises(InputError, match="does not overlap"):
        function.init_tracking_state(context, pp, _rect([5000, 10, 5100, 50]))
    # Corners in either order are one rectangle.
    state = function.init_tracking_state(context, pp, _rect([347, 295, 315, 211]))
    assert state.box == (315.0, 211.0, 347.0, 295.0)
    with pytest.raises(AutotrackError, match="min_score must be between"):
        load_function(FILES["vittrack"], "min_score=float:2")
    with pytest.raises(TypeError, match="model"):
        load_function(FILES["nanotrack"], "model=str:vittrack")
