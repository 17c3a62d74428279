"""OSTrack behind the same doors as VitTrack: ``load_sot("ostrack")``, the Nuclio tracker
function serverless/ostrack (through nuclio-sdk's test platform) and functions/ostrack.py
(through cvat-cli's loader and agent worker jobs).

Everything runs on ``preset="tiny-random"`` (tiny_config() with seeded random weights): the
official weights are not in this repo, so these tests check the plumbing (calls, state format
and size, session re-initialisation, errors), not tracking quality; parity of the model and
loop with the official code is tests/test_ostrack.py.
"""

from __future__ import annotations

import base64
import json

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import PIL.Image
import pytest

from autotrack.errors import ModelNotFoundError
from autotrack.sot import MAX_SOT_STATE_BYTES, SotState, load_sot
from autotrack.sot import ostrack as ost
from autotrack.sot.ostrack_sot import CHECKPOINT_ENV, RELEASE_PAGE, OSTrackSot
from conftest import REPO_ROOT
from helpers import load_main
from test_nuclio_tracker import b64jpeg, call, ok_json

START_BOX = [315.0, 211.0, 347.0, 295.0]  # a person in vtest.avi frame 300
FIRST, COUNT = 300, 5


@pytest.fixture(scope="module")
def frames(vtest_video) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(vtest_video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, FIRST)
    out = [cap.read()[1] for _ in range(COUNT)]
    cap.release()
    assert all(f is not None for f in out)
    return out


@pytest.fixture(scope="module")
def images(frames) -> list[str]:
    return [b64jpeg(f) for f in frames]


@pytest.fixture(autouse=True)
def _no_checkpoint(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv("AUTOTRACK_OSTRACK_PRESET", raising=False)
    monkeypatch.delenv("AUTOTRACK_DEVICE", raising=False)


def _platform(monkeypatch, **env: str):
    module = load_main("ostrack")
    platform = nuclio_sdk.test.Platform()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    response = call(platform, module.handler, {})  # refused, but runs init_context
    assert response.status_code == 400
    return platform, module.handler


def _function(platform):
    platform, handler = platform
    return platform._get_handler_context(handler).user_data.autotrack


def _track(platform, images, *, clear_sessions=False):
    """Start on images[0], then one call per frame; states go through JSON as CVAT keeps them."""
    result = ok_json(call(*platform, {"image": images[0], "shapes": [START_BOX], "states": []}))
    boxes, states_seen = [result["shapes"][0]], [result["states"][0]]
    states = json.loads(json.dumps(result["states"]))
    for image in images[1:]:
        if clear_sessions:
            _function(platform).tracker.store.clear()
        result = ok_json(call(*platform, {"image": image, "shapes": [None], "states": states}))
        assert len(result["shapes"]) == len(result["states"]) == 1
        boxes.append(result["shapes"][0])
        states_seen.append(result["states"][0])
        states = json.loads(json.dumps(result["states"]))
    return boxes, states_seen


def test_nuclio_ostrack_tracks_with_small_round_tripping_states(monkeypatch, frames, images):
    platform = _platform(monkeypatch, AUTOTRACK_OSTRACK_PRESET="tiny-random")
    tracker = _function(platform).tracker
    assert isinstance(tracker, OSTrackSot) and tracker.kind == "ostrack"
    boxes, states = _track(platform, images)
    assert tracker.reinits == 0  # the live session was used on every call
    height, width = frames[0].shape[:2]
    for box in boxes[1:]:
        x1, y1, x2, y2 = box
        assert all(np.isfinite(box)) and 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    for step, text in enumerate(states):
        assert len(text) <= MAX_SOT_STATE_BYTES
        state = SotState.decode(json.loads(json.dumps(text)), "ostrack")
        assert state.step == step and state.template.startswith(b"\xff\xd8")
        assert state.encode() == text  # decode/encode is lossless
        assert [round(v, 2) for v in state.box] == boxes[step]
    # the loop is the official one: the same model through OSTrackTracker gives the same boxes
    # (the function answers from a JPEG of the frame, so feed the reference the same pixels)
    decoded = [cv2.imdecode(np.frombuffer(base64.b64decode(i), np.uint8),
                            cv2.IMREAD_COLOR) for i in images]
    ref = ost.OSTrackTracker(tracker.model)
    ref_state = ref.init(decoded[0], tuple(START_BOX))
    for image, box in zip(decoded[1:], boxes[1:]):
        expected, _, ref_state = ref.update(image, ref_state)
        np.testing.assert_allclose(box, expected, atol=0.02)


def test_nuclio_ostrack_reinitialises_with_the_session_store_cleared(monkeypatch, images):
    platform = _platform(monkeypatch, AUTOTRACK_OSTRACK_PRESET="tiny-random")
    boxes, states = _track(platform, images, clear_sessions=True)
    assert _function(platform).tracker.reinits == len(images) - 1
    assert len(boxes) == len(images) and all(len(b) == 4 for b in boxes)
    assert max(len(s) for s in states) <= MAX_SOT_STATE_BYTES
    # another worker with no sessions at all continues the same way (deterministic re-init)
    again, _ = _track(_platform(monkeypatch, AUTOTRACK_OSTRACK_PRESET="tiny-random"), images,
                      clear_sessions=True)
    assert again == boxes
    # a VitTrack-kind state is refused with a 4xx, not a crash
    foreign = SotState.decode(states[1], "ostrack").with_(kind="vittrack").encode()
    response = call(*platform, {"image": images[1], "states": [foreign]})
    assert response.status_code == 400 and "sot-vittrack" in json.loads(response.body)["error"]


def _assert_one_line_missing(message: str) -> None:
    assert "\n" not in message
    assert CHECKPOINT_ENV in message and RELEASE_PAGE in message


def test_missing_checkpoint_is_one_clear_line(monkeypatch, tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        load_sot("ostrack")
    _assert_one_line_missing(str(info.value))
    with pytest.raises(ModelNotFoundError, match="not a file") as info:
        load_sot("ostrack", checkpoint=tmp_path / "OSTrack_ep0300.pth.tar")
    assert "\n" not in str(info.value) and RELEASE_PAGE in str(info.value)
    with pytest.raises(TypeError, match="no options"):
        load_sot("vittrack", preset="tiny-random")
    # the Nuclio worker does not start, and says why in one line
    module = load_main("ostrack")
    with pytest.raises(ModelNotFoundError) as info:
        call(nuclio_sdk.test.Platform(), module.handler, {})
    _assert_one_line_missing(str(info.value))


def test_tiny_random_is_seeded():
    a = load_sot("ostrack", preset="tiny-random").model.state_dict()
    b = load_sot("ostrack", preset="tiny-random").model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


# --- functions/ostrack.py through cvat-cli ------------------------------------------------

def test_cvat_sdk_function_loads_with_cvat_cli_and_tracks_3_frames(monkeypatch, frames):
    pytest.importorskip("cvat_cli")
    import cvat_sdk.auto_annotation as cvataa
    from cvat_cli._internal import agent as cvat_agent
    from cvat_cli._internal import agent_driver as cvat_agent_driver
    from cvat_cli._internal import agent_driver_tracking as cvat_tracking

    from autotrack.cvat.sdk.tracking import SotTrackingFunction, TrackingState
    from test_sdk_tracking import _loader

    function_file = REPO_ROOT / "functions" / "ostrack.py"
    spec_only = _loader(function_file, "preset=str:tiny-random", command="create-native").load()
    assert isinstance(spec_only, SotTrackingFunction) and spec_only.kind == "ostrack"
    assert spec_only.spec == cvataa.TrackingFunctionSpec(supported_shape_types=["rectangle"])
    assert cvat_agent.get_function_driver_class(spec_only.spec) \
        is cvat_tracking.AgentTrackingFunctionDriver

    monkeypatch.setattr(cvat_agent_driver, "_current_function", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_states", None, raising=False)
    monkeypatch.setattr(cvat_tracking, "_tracking_state_id_generator", None, raising=False)
    counter = iter(range(10**6))
    cvat_agent._worker_init(_loader(function_file, "preset=str:tiny-random"),
                            lambda: f"state-{next(counter)}")
    function = cvat_agent_driver.worker_current_function()
    images = [PIL.Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames[:4]]
    shape = cvataa.TrackableShape(type="rectangle", points=START_BOX)
    states = cvat_tracking._worker_job_init_tracking(7, images[0], [shape])
    for image in images[1:]:
        (out,) = cvat_tracking._worker_job_track(7, image, states)
        assert out is not None and out.type == "rectangle" and len(out.points) == 4
        x1, y1, x2, y2 = out.points
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
    state, _ = cvat_tracking._tracking_states.retrieve(states[0], 7, images[0].size)
    assert isinstance(state, TrackingState) and state.sot.step == 3
    assert function.tracker.reinits == 0
    # without the test preset and without a checkpoint, loading fails with the one line
    with pytest.raises(ModelNotFoundError) as info:
        _loader(function_file).load()
    _assert_one_line_missing(str(info.value))
