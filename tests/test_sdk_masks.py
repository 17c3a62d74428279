"""functions/sam2_interactor.py, sam2_tracker.py and xmem.py as cvat-cli loads and runs them.

The files are loaded by cvat-cli's own argument parser and ``FunctionLoader`` (what
`cvat-cli function create-native` and `run-agent` do), specs go through cvat-cli's agent
driver classes, and requests run through the agent's own worker jobs
(``_worker_job_interact``, ``_worker_job_init_tracking``, ``_worker_job_track``), which keep
the states in the worker and check the output shapes' types. Seeded random weights at a small
working size, on bedroom frames halved to 480x270: the masks are compared with the models run
directly, not with the scene.
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
pytest.importorskip("sam2")

import cvat_sdk.auto_annotation as cvataa  # noqa: E402
from cvat_cli._internal import agent as cvat_agent  # noqa: E402
from cvat_cli._internal import agent_driver as cvat_agent_driver  # noqa: E402
from cvat_cli._internal import agent_driver_interaction as cvat_interaction  # noqa: E402
from cvat_cli._internal import agent_driver_tracking as cvat_tracking  # noqa: E402
from cvat_cli._internal import common as cvat_cli_common  # noqa: E402
from cvat_cli._internal.commands_all import COMMANDS  # noqa: E402
from cvat_sdk.masks import decode_mask  # noqa: E402

from autotrack.cvat.sdk.masks import (  # noqa: E402
    MaskInteractionFunction,
    MaskTracking,
    MaskTrackingFunction,
)
from autotrack.errors import InputError  # noqa: E402
from autotrack.masks import encode_cvat_mask, mask_to_polygon  # noqa: E402
from autotrack.vos.base import ObjectPrompt  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

FILES = {name: REPO_ROOT / "functions" / f"{name}.py"
         for name in ("sam2_interactor", "sam2_tracker", "xmem")}
SAM2 = ("random_init=bool:true", "image_size=int:128")
XMEM = ("random_init=bool:true", "size=int:96")
TASK_ID, FUNCTION_ID = 7, 3
BOX = [60.0, 70.0, 260.0, 250.0]
POLYGON = [300.0, 60.0, 420.0, 60.0, 420.0, 200.0, 300.0, 200.0]


def _loader(function_file: Path, *params: str, command: str = "run-agent"):
    parser = argparse.ArgumentParser()
    cvat_cli_common.configure_common_arguments(parser)
    COMMANDS.configure_parser(parser)
    argv = (["function", "run-agent", str(FUNCTION_ID)] if command == "run-agent"
            else ["function", "create-native", "F"])
    argv += ["--function-file", str(function_file)]
    for param in params:
        argv += ["-p", param]
    args = parser.parse_args(argv)
    return cvat_cli_common.FunctionLoader(args.function_module, args.function_file,
                                          args.function_parameters)


@pytest.fixture(scope="module")
def images(bedroom_dir) -> list[PIL.Image.Image]:
    """Frames 0-1 as cvat-cli hands them to a function: RGB PIL images."""
    out = []
    for index in range(2):
        frame = cv2.resize(cv2.imread(str(bedroom_dir / f"{index:05d}.jpg")), (480, 270),
                           interpolation=cv2.INTER_AREA)
        out.append(PIL.Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    return out


@pytest.fixture
def agent_worker(monkeypatch):
    """cvat-cli's agent worker initialisation in this process; returns a starter."""
    counter = iter(range(10**6))
    monkeypatch.setattr(cvat_agent_driver, "_current_function", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_states", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_state_id_generator", None, raising=False)

    def start(function_file: Path, *params: str):
        loader = _loader(function_file, *params)
        cvat_agent._worker_init(loader, lambda: f"state-{next(counter)}")
        function = cvat_agent_driver.worker_current_function()
        driver = cvat_agent.get_function_driver_class(function.spec)
        driver.init_worker(lambda: f"state-{next(counter)}")
        return function

    return start


def _bgr(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image)[:, :, ::-1].copy()


# --- interaction through the agent's worker jobs ---------------------------------------------


def test_interactor_gives_the_models_mask_through_the_agent(agent_worker, images) -> None:
    function = agent_worker(FILES["sam2_interactor"], *SAM2)
    assert isinstance(function, MaskInteractionFunction)
    driver = cvat_agent.get_function_driver_class(function.spec)
    assert driver is cvat_interaction.AgentInteractionFunctionDriver
    assert driver.get_remote_function_fields(function.spec) == {
        "min_pos_points": 0, "min_neg_points": 0, "startswith_box_optional": True}
    driver(None, None, function.spec).validate_function_compatibility({
        "min_pos_points": 0, "min_neg_points": 0, "startswith_box": False,
        "startswith_box_optional": True})
    prompts = cvat_interaction._InteractionPromptsImpl(
        pos_points=((150.0, 160.0),), neg_points=((400.0, 40.0),),
        bounding_box=((BOX[0], BOX[1]), (BOX[2], BOX[3])))
    shapes = cvat_interaction._worker_job_interact(("task", 0), images[0], prompts)
    assert pickle.loads(pickle.dumps(shapes)) == shapes  # run-agent pickles worker output
    (shape,) = shapes
    assert shape.type == "mask"
    assert shape.attributes[0].spec_id == cvataa.InteractionResultAttributes.CONFIDENCE
    assert 0.0 <= float(shape.attributes[0].value) <= 1.0
    direct = function.interactor.segment(_bgr(images[0]), ObjectPrompt(
        1, points=np.array([[150, 160], [400, 40]], np.float32), point_labels=np.array([1, 0]),
        box=tuple(BOX)))
    mask = decode_mask(shape.points, image_width=480, image_height=270)  # cvat-sdk's decoder
    assert direct.mask.any() and np.array_equal(mask, direct.mask)
    # the agent reuses the preprocessed frame for more clicks on it
    again = cvat_interaction._worker_job_interact_from_cache(
        ("task", 0), cvat_interaction._InteractionPromptsImpl(
            pos_points=((150.0, 160.0),), neg_points=(), bounding_box=None))
    assert again and again[0].type == "mask"
    for bad, words in ((((500.0, 10.0),), "outside"), ((), "positive point")):
        with pytest.raises(InputError, match=words):
            function.detect(None, _bgr(images[0]), cvat_interaction._InteractionPromptsImpl(
                pos_points=bad, neg_points=(), bounding_box=None))


# --- tracking through the agent's worker jobs ------------------------------------------------


def _check_tracker_spec(function, kind: str) -> None:
    assert isinstance(function, MaskTrackingFunction) and function.kind == kind
    driver = cvat_agent.get_function_driver_class(function.spec)
    assert driver is cvat_tracking.AgentTrackingFunctionDriver
    assert driver.get_remote_function_fields(function.spec) == {
        "supported_shape_types": ["mask", "polygon", "rectangle"]}
    driver(None, None, function.spec).validate_function_compatibility(
        {"supported_shape_types": ["rectangle", "mask"]})


def test_sam2_tracks_three_shape_types_through_the_agent(agent_worker, images) -> None:
    function = agent_worker(FILES["sam2_tracker"], *SAM2)
    _check_tracker_spec(function, "sam2")
    blob = np.zeros((270, 480), bool)
    blob[150:230, 300:380] = True
    shapes = [cvataa.TrackableShape(type="rectangle", points=BOX),
              cvataa.TrackableShape(type="polygon", points=POLYGON),
              cvataa.TrackableShape(type="mask", points=encode_cvat_mask(blob))]
    states = cvat_tracking._worker_job_init_tracking(TASK_ID, images[0], shapes)
    assert len(set(states)) == 3
    # the same prompts run directly, one segmenter per shape as the agent drives them
    from autotrack.vos.sam2 import Sam2Segmenter

    first, _ = cvat_tracking._tracking_states.retrieve(states[0], TASK_ID, images[0].size)
    model = next(iter(first.live._items.values())).tracker.segmenter.model
    polygon = np.zeros((270, 480), np.uint8)
    cv2.fillPoly(polygon, [np.reshape(POLYGON, (-1, 2)).astype(np.int32)], 1)
    direct = [Sam2Segmenter(model) for _ in shapes]
    for segmenter, prompt in zip(direct, (ObjectPrompt(1, box=tuple(BOX)),
                                          ObjectPrompt(1, mask=polygon.astype(bool)),
                                          ObjectPrompt(1, mask=blob))):
        segmenter.step(_bgr(images[0]), [prompt])
    for image in images[1:2]:
        tracked = cvat_tracking._worker_job_track(TASK_ID, image, states)
        assert pickle.loads(pickle.dumps(tracked)) == tracked
        masks = [segmenter.step(_bgr(image))[1] for segmenter in direct]
        rect, poly, mask = tracked
        box = encode_cvat_mask(masks[0])
        assert rect.type == "rectangle" and rect.points == [box[-4], box[-3], box[-2] + 1,
                                                             box[-1] + 1]
        assert poly.type == "polygon" and poly.points == mask_to_polygon(masks[1])
        assert mask.type == "mask"
        assert np.array_equal(decode_mask(mask.points, image_width=480, image_height=270),
                              masks[2])
    state, shape_type = cvat_tracking._tracking_states.retrieve(states[2], TASK_ID,
                                                                images[0].size)
    assert isinstance(state, MaskTracking) and shape_type == "mask"
    assert state.state.step == 1 and function.tracker.reinits == 0


def test_evicted_sessions_restart_from_the_state(images) -> None:
    """With no live session kept, every frame starts the object again from its state."""
    function = _loader(FILES["sam2_tracker"], *SAM2, "max_sessions=int:0").load()
    pp = [function.preprocess_image(None, image) for image in images]
    state = function.init_tracking_state(None, pp[0], cvataa.TrackableShape(
        type="polygon", points=POLYGON))
    shape = function.track(None, pp[1], state)
    assert shape is None or shape.type == "polygon"
    assert function.tracker.reinits == 1 and state.state.step == 1 and len(function.tracker.store) == 0


class _CountingSegmenter:
    """A stand-in segmenter: each object's prompt box, filled, on every frame."""

    def __init__(self) -> None:
        self.masks: dict[int, np.ndarray] = {}

    def step(self, image, prompts=()):
        for p in prompts:
            mask = np.zeros(image.shape[:2], bool)
            if p.mask is not None:
                mask = p.mask.copy()
            else:
                x1, y1, x2, y2 = (int(v) for v in p.box)
                mask[y1:y2, x1:x2] = True
            self.masks[p.object_id] = mask
        return dict(self.masks)

    def forget(self, object_id):
        self.masks.pop(object_id, None)

    def reset(self):
        self.masks.clear()

    def memory_stats(self):
        from autotrack.vos.base import MemoryStats

        return MemoryStats(1, 0, len(self.masks))


def test_many_shapes_round_robin_keep_their_live_segmenters(agent_worker, images) -> None:
    """The agent tracks shape by shape; more shapes than max_sessions (16) still never restart."""
    function = agent_worker(FILES["sam2_tracker"], *SAM2)
    built = []
    function.tracker.factory = lambda: built.append(_CountingSegmenter()) or built[-1]
    shapes = [cvataa.TrackableShape(type="rectangle", points=[10.0 + 20 * k, 20.0,
                                                              25.0 + 20 * k, 60.0])
              for k in range(20)]
    states = cvat_tracking._worker_job_init_tracking(TASK_ID, images[0], shapes)
    for image in (images[1], images[0]):
        tracked = cvat_tracking._worker_job_track(TASK_ID, image, states)
        assert [shape.points for shape in tracked] == [shape.points for shape in shapes]
    assert function.tracker.reinits == 0 and len(built) == 20


def test_xmem_tracks_through_the_agent(agent_worker, images) -> None:
    function = agent_worker(FILES["xmem"], *XMEM)
    _check_tracker_spec(function, "xmem")
    states = cvat_tracking._worker_job_init_tracking(
        TASK_ID, images[0], [cvataa.TrackableShape(type="rectangle", points=BOX)])
    (shape,) = cvat_tracking._worker_job_track(TASK_ID, images[1], states)
    assert shape is None or (shape.type == "rectangle" and len(shape.points) == 4)
    assert function.kind == "xmem" and function.tracker.reinits == 0


def test_bad_shapes_and_parameters_are_clear_errors(images) -> None:
    function = _loader(FILES["sam2_tracker"], *SAM2).load()
    pp = function.preprocess_image(None, images[0].convert("L"))  # any PIL mode
    assert pp.shape == (270, 480, 3)
    for shape, words in (
            (cvataa.TrackableShape(type="rectangle", points=[1, 2, 3]), "4 numbers"),
            (cvataa.TrackableShape(type="rectangle", points=[900, 9, 990, 50]), "overlap"),
            (cvataa.TrackableShape(type="polygon", points=[1, 1, 5, 1]), "at least 3"),
            (cvataa.TrackableShape(type="mask", points=[0, 4, 900, 900, 901, 901]), "outside"),
            (cvataa.TrackableShape(type="ellipse", points=BOX), "cannot be tracked")):
        with pytest.raises(InputError, match=words):
            function.init_tracking_state(None, pp, shape)
    with pytest.raises(TypeError, match="model"):
        _loader(FILES["xmem"], "model=str:xmem").load()
