"""Hostile requests to every tracker and the SAM2 interactor (issue 12): each must get a 4xx
with a short JSON ``error`` (the whole body at most 4 KB), never a 500, and every refusal is
logged with a request id and sizes but without the payload.

The functions run through nuclio-sdk's test platform as in tests/test_nuclio_tracker.py and
tests/test_nuclio_masks.py: VitTrack, NanoTrack and ByteTrack (YOLOX-Nano) with their real
weights, OSTrack with the ``tiny-random`` preset, SAM2 and XMem with seeded random weights at a
small working size.
"""

from __future__ import annotations

import base64
import json

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest

from conftest import MODELS_DIR
from helpers import load_main, resign

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

MAX_ERROR_BYTES = 4096
HUGE = 10**400  # 401 digits: JSON reads it as an int that no float can hold
ENV = {"AUTOTRACK_SAM2_RANDOM_INIT": "1", "AUTOTRACK_SAM2_IMAGE_SIZE": "128",
       "AUTOTRACK_XMEM_RANDOM_INIT": "1", "AUTOTRACK_XMEM_SIZE": "96",
       "AUTOTRACK_OSTRACK_PRESET": "tiny-random"}
SOT = ["vittrack", "nanotrack", "ostrack", "bytetrack"]  # bytetrack: boxes too
MASK_TRACKERS = ["sam2-tracker", "xmem"]
TRACKERS = SOT + MASK_TRACKERS
BOX = [120, 80, 200, 160]


def _frame(height: int = 240, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(12)
    frame = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    frame[80:160, 120:200] = (40, 190, 230)
    frame[100:140, 140:180] = (200, 40, 60)
    return frame


def _b64(frame: np.ndarray, ext: str = ".jpg") -> str:
    ok, data = cv2.imencode(ext, frame)
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


IMAGE = _b64(_frame())


@pytest.fixture(scope="module")
def functions():
    """A getter: the (platform, handler) of a function, initialised on first use."""
    loaded: dict[str, tuple] = {}

    def get(name: str):
        if name not in loaded:
            if name in ("sam2-tracker", "sam2-interactor"):
                pytest.importorskip("sam2")
            module = load_main(name)
            platform = nuclio_sdk.test.Platform()
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
                patch.setenv("AUTOTRACK_OFFLINE", "1")
                patch.delenv("AUTOTRACK_STATE_KEY", raising=False)
                for key, value in ENV.items():
                    patch.setenv(key, value)
                response = platform.call_handler(module.handler, nuclio_sdk.Event(body={}))
            assert response.status_code == 400  # refused, but init_context ran
            loaded[name] = (platform, module.handler)
        return loaded[name]

    return get


def call(function, body, **event):
    platform, handler = function
    return platform.call_handler(handler, nuclio_sdk.Event(body=body, **event))


def refused(response) -> dict:
    """The response is a 4xx with a short JSON error; returns the error object."""
    body = response.body if isinstance(response.body, bytes) else response.body.encode()
    assert 400 <= response.status_code < 500, (response.status_code, body[:300])
    assert len(body) <= MAX_ERROR_BYTES, (len(body), body[:300])
    assert response.content_type == "application/json"
    error = json.loads(body)
    assert isinstance(error["error"], str) and error["error"], error
    assert error["status"] == response.status_code, error
    return error


def _state(functions, name: str) -> str:
    response = call(functions(name), {"image": IMAGE, "shapes": [BOX], "states": []})
    assert response.status_code == 200, response.body
    return json.loads(response.body)["states"][0]


def _continue(state: str) -> dict:
    return {"image": IMAGE, "shapes": [None], "states": [state]}


# --- 1: frames one pixel wide or high ---------------------------------------------------------


@pytest.mark.parametrize("width, height", [(1, 64), (64, 1), (1, 1), (5, 1), (65000, 1)])
@pytest.mark.parametrize("name", SOT)
def test_a_frame_one_pixel_wide_or_high_is_refused(functions, name, width, height):
    image = _b64(np.full((height, width, 3), 128, np.uint8), ".png")
    error = refused(call(functions(name), {"image": image, "shapes": [[0, 0, width, height]],
                                           "states": []}))
    assert "pixel" in error["error"] and error.get("field") == "image"


@pytest.mark.parametrize("name", SOT)
def test_a_frame_thinner_than_one_to_sixteen_is_refused(functions, name):
    """A full-frame box on a 65000x2 frame made NanoTrack allocate 38 GB (a 500)."""
    image = _b64(np.full((2, 65000, 3), 128, np.uint8), ".png")
    error = refused(call(functions(name), {"image": image, "shapes": [[0, 0, 65000, 2]],
                                           "states": []}))
    assert "16 times" in error["error"] and error.get("field") == "image"


# --- 2, 5, 6: integers no float can hold in a request ------------------------------------------


_BOX_SHAPES = {
    "x2": [1, 2, HUGE, 4], "x1-negative": [-HUGE, 2, 3, 4],
    "shape-object": {"type": "rectangle", "points": [1, 2, HUGE, 4]},
    "rotation": {"type": "rectangle", "points": BOX, "rotation": HUGE},
    "rotation-multiple-of-360": {"type": "rectangle", "points": BOX, "rotation": 360 * HUGE},
}


# a mask tracker already refused a rotation of 10**400 (not a multiple of 360) as rotated
@pytest.mark.parametrize("name, shape", [
    pytest.param(name, shape, id=f"{name}-{key}") for name in TRACKERS
    for key, shape in _BOX_SHAPES.items() if name in SOT or key != "rotation"])
def test_a_huge_integer_in_a_box_or_rotation_is_refused(functions, name, shape):
    body = json.dumps({"image": IMAGE, "shapes": [shape], "states": []}).encode()
    error = refused(call(functions(name), body))
    assert error.get("field") == "shapes[0]"


@pytest.mark.parametrize("shape", [
    {"type": "polygon", "points": [10, 10, HUGE, 10, 50, 50]},
    {"type": "polygon", "points": [10, 10, 90, 10, 50, -HUGE]},
    {"type": "mask", "points": [HUGE, 3, 10, 10, 11, 11]},
    {"type": "mask", "points": [0, 4, 10, 10, HUGE, 11]},
], ids=["polygon", "polygon-negative", "mask-run", "mask-box"])
@pytest.mark.parametrize("name", MASK_TRACKERS)
def test_a_huge_integer_in_a_polygon_or_mask_is_refused(functions, name, shape):
    body = json.dumps({"image": IMAGE, "shapes": [shape], "states": []}).encode()
    assert refused(call(functions(name), body)).get("field") == "shapes[0]"


@pytest.mark.parametrize("fields", [
    {"pos_points": [[HUGE, 5]]},
    {"pos_points": [[5, 5]], "neg_points": [[5, -HUGE]]},
    {"obj_bbox": [[1, 2], [HUGE, 4]]},
    {"obj_bbox": [1, 2, HUGE, 4]},
    {"pos_points": [[5, 5]], "obj_bbox": [-HUGE, 2, 30, 40]},
], ids=["pos", "neg", "corners", "flat", "flat-negative"])
def test_a_huge_integer_in_an_interactor_point_or_box_is_refused(functions, fields):
    body = json.dumps({"image": IMAGE, **fields}).encode()
    field = refused(call(functions("sam2-interactor"), body)).get("field", "")
    assert field.split("[")[0] in fields


# --- 3: numbers out of range in a state whose digest was recomputed -----------------------------


def _edited(state: str, **changes) -> str:
    envelope = json.loads(state)
    envelope["payload"].update(changes)
    return resign(envelope)


@pytest.mark.parametrize("changes", [
    {"score": HUGE}, {"score": -HUGE}, {"score": 1e300}, {"score": 2}, {"step": HUGE},
], ids=["score-huge", "score-huge-negative", "score-1e300", "score-2", "step-huge"])
@pytest.mark.parametrize("name", SOT)
def test_a_resigned_sot_state_with_a_number_out_of_range_is_refused(functions, name, changes):
    state = _edited(_state(functions, name), **changes)
    assert refused(call(functions(name), _continue(state))).get("field") == "states[0]"


@pytest.mark.parametrize("changes", [{"step": HUGE}, {"object_id": HUGE}],
                         ids=["step", "object_id"])
@pytest.mark.parametrize("name", MASK_TRACKERS)
def test_a_resigned_mask_state_with_a_number_out_of_range_is_refused(functions, name, changes):
    state = _edited(_state(functions, name), **changes)
    assert refused(call(functions(name), _continue(state))).get("field") == "states[0]"


# --- boxes far past the frame (found by the fuzzing campaign) ---------------------------------


@pytest.mark.parametrize("box", [[120, 80, 200, 5000], [-5000, 80, 200, 160],
                                 [-1, 0.5, 320, 1001], [0.0, -1, 1e6, 1e6]],
                         ids=["far-below", "far-left", "tall", "a-million-wide"])
@pytest.mark.parametrize("name", SOT)
def test_a_start_box_reaching_far_past_the_frame_is_cut_to_it(functions, name, box):
    """OSTrack cropped around the box's centre, far off the frame: an empty crop (500 from
    copyMakeBorder) or a 12 TB allocation; every SOT tracker now starts from the box cut to
    the frame."""
    response = call(functions(name), {"image": IMAGE, "shapes": [box], "states": []})
    assert response.status_code == 200, response.body
    x1, y1, x2, y2 = json.loads(response.body)["shapes"][0]
    assert -20 <= x1 < x2 <= 340 and -20 <= y1 < y2 <= 260


@pytest.mark.parametrize("box", [[9e5, 9e5, 9.5e5, 9.5e5], [-9e5, 10, -8e5, 100],
                                 [0, 0, 9e5, 9e5]], ids=["far-off", "far-left", "huge"])
@pytest.mark.parametrize("name", SOT)
def test_a_resigned_state_whose_box_is_far_off_the_frame_is_answered(functions, name, box):
    """A state's box is client data: far off the frame it must not crash a crop or allocate
    a crop of its size."""
    state = _edited(_state(functions, name), box=box)
    response = call(functions(name), _continue(state))
    assert response.status_code < 500, response.body


def test_ostrack_crops_far_off_the_image_stay_small():
    from autotrack.sot.ostrack import sample_target

    image = np.full((90, 160, 3), 200, np.uint8)
    patch, scale = sample_target(image, [40, 5000, 50, 50], 4.0, 128)
    assert patch.shape == (128, 128, 3) and not patch.any()  # all padding
    patch, scale = sample_target(image, [-5e5, -5e5, 1e6, 1e6], 4.0, 128)
    assert patch.shape == (128, 128, 3) and scale == pytest.approx(128 / 4e6)
    assert 0 < np.count_nonzero(patch[..., 0]) <= 4  # the frame is a dot in the middle
    near, _ = sample_target(image, [40, 20, 50, 50], 4.0, 128)  # the usual path is unchanged
    assert near.shape == (128, 128, 3) and near.any()


@pytest.mark.parametrize("name", MASK_TRACKERS)
def test_a_state_whose_start_frame_does_not_decode_is_refused_before_any_restart(functions,
                                                                                name):
    """A later state's stored JPEG of another size was refused only after the states before it
    were started again (0.85 s idle, 20 s under load): it is refused while parsing."""
    from helpers import edit_array_field

    good = _state(functions, name)
    other = _state(functions, name)
    envelope = json.loads(other)
    _, small = cv2.imencode(".jpg", np.zeros((7, 9, 3), np.uint8))
    edit_array_field(envelope, "prompt_jpeg", lambda _: np.frombuffer(small, np.uint8))
    body = {"image": IMAGE, "shapes": [None, None], "states": [good, resign(envelope)]}
    error = refused(call(functions(name), body))
    assert error.get("field") == "states[1]" and "stored size" in error["error"]


# --- 4: a non-ASCII digest ----------------------------------------------------------------------


@pytest.mark.parametrize("digest", [lambda d: d[:-1] + "é", lambda d: "é", lambda d: d + "€" * 9],
                         ids=["last-char", "only", "appended"])
@pytest.mark.parametrize("name", TRACKERS)
def test_a_non_ascii_digest_is_refused(functions, name, digest):
    envelope = json.loads(_state(functions, name))
    envelope["digest"] = digest(envelope["digest"])
    error = refused(call(functions(name), _continue(json.dumps(envelope))))
    assert "digest" in error["error"] and error.get("field") == "states[0]"


# --- 7: a shape type nested too deep to print ---------------------------------------------------


@pytest.mark.parametrize("name", TRACKERS)
def test_a_deeply_nested_shape_type_is_refused(functions, name):
    nested: object = "rectangle"
    for _ in range(3000):
        nested = [nested]
    body = {"image": IMAGE, "shapes": [{"type": nested, "points": BOX}], "states": []}
    error = refused(call(functions(name), body))  # a parsed body, as Nuclio may hand over
    assert error.get("field") == "shapes[0]" and "array" in error["error"]


# --- 8: errors quote at most a short prefix of the input ---------------------------------------


@pytest.mark.parametrize("name", TRACKERS)
def test_an_error_never_echoes_a_long_string(functions, name):
    two_mb = (b'{"image": "' + IMAGE.encode() + b'", "states": [], "shapes": [{"type": "'
              + b"\x7f" * 2_000_000 + b'", "points": [1, 2, 3, 4]}]}')
    assert "\x7f" * 40 not in refused(call(functions(name), two_mb))["error"]
    huge_type = "x" * 33_500_000  # a parsed body, which no byte limit measured
    error = refused(call(functions(name), {"image": IMAGE, "shapes": [
        {"type": huge_type, "points": BOX}]}))
    assert "x" * 100 not in error["error"]


@pytest.mark.parametrize("key", ["kind", "version"])
@pytest.mark.parametrize("name", TRACKERS)
def test_a_state_error_never_echoes_a_long_field(functions, name, key):
    envelope = json.loads(_state(functions, name))
    envelope.update(payload={}, digest="x")
    envelope[key] = "k" * 15_000  # under every state size limit (16 KiB for SOT states)
    error = refused(call(functions(name), _continue(json.dumps(envelope))))
    assert "k" * 100 not in error["error"]


# --- 11: refusals are logged with an id and sizes, never the payload ---------------------------


class _Logger:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda message, *args, **fields: self.lines.append(
            (level, message + "".join(f" {k}={v}" for k, v in fields.items())))


@pytest.mark.parametrize("name", ["vittrack", "sam2-tracker", "sam2-interactor"])
def test_a_refusal_is_logged_with_an_id_and_sizes_but_not_the_payload(functions, name):
    platform, handler = functions(name)
    context = platform._get_handler_context(handler)
    secret = "SECRET-PAYLOAD-" * 200
    if name == "sam2-interactor":
        fields = {"pos_points": [[HUGE, 5]], "note": secret}
    else:
        fields = {"shapes": [{"type": secret, "points": BOX}], "states": []}
    body = json.dumps({"image": IMAGE, **fields}).encode()
    logger, context.logger = context.logger, _Logger()
    try:
        first = refused(call((platform, handler), body, _id="evt-7f3a"))
        refused(call((platform, handler), body))  # no id from Nuclio: one is made up
        lines = context.logger.lines
    finally:
        context.logger = logger
    assert len(lines) == 2 and all(level == "warn" for level, _ in lines), lines
    assert "evt-7f3a" in lines[0][1]
    assert str(len(body)) in lines[0][1] and str(len(body)) in lines[1][1]
    assert first["error"][:40] in lines[0][1]
    for _, line in lines:
        assert secret[:60] not in line and IMAGE[:40] not in line  # a short quote at most
        assert len(line) <= 1500
    ids = [line.split("request ", 1)[1].split()[0] for _, line in lines]
    assert ids[0] == "evt-7f3a" and ids[1] and ids[1] != ids[0]


# --- 9: work per request bounded for the mask functions --------------------------------------


@pytest.mark.parametrize("name", ["sam2-interactor", *MASK_TRACKERS])
def test_mask_functions_refuse_frames_past_4k_before_decoding(functions, name):
    """A 1 MB JPEG of 8192x8192 took 6-17 s and a 200 MB answer; past 4K UHD (3840x2160
    pixels) the mask functions answer 413 from the image header alone."""
    from autotrack.cvat.nuclio.request import MASK_MAX_IMAGE_PIXELS

    image = _b64(np.zeros((8192, 8192, 3), np.uint8))
    body = ({"image": image, "pos_points": [[10, 10]], "neg_points": []}
            if name == "sam2-interactor" else {"image": image, "shapes": [BOX], "states": []})
    response = call(functions(name), body)
    assert response.status_code == 413, response.body
    assert str(MASK_MAX_IMAGE_PIXELS) in json.loads(response.body)["error"]
