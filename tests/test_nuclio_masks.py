"""serverless/sam2-interactor, sam2-tracker and xmem: CVAT's interactor and tracker requests
through nuclio-sdk's test platform, on bedroom frames (the SAM2 demo video, halved to 480x270)
with seeded random weights at a small working size (AUTOTRACK_SAM2_IMAGE_SIZE=128,
AUTOTRACK_XMEM_SIZE=96), every state through json.dumps/loads as CVAT keeps it.

Random weights make no claim about quality; what is checked is the door: each answer is in the
format CVAT's UI reads and decodes to exactly the pixels the model gives when run directly on
the same decoded frames, states resume on a worker that never saw the object, and malformed
requests get a clear 4xx.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest
import yaml

from autotrack.masks import decode_cvat_mask, encode_cvat_mask, mask_to_polygon
from autotrack.state import encode_state
from autotrack.vos.base import ObjectPrompt
from autotrack.vos.mask_state import MAX_MASK_STATE_BYTES, MaskTrackState
from conftest import REPO_ROOT
from helpers import load_main

pytest.importorskip("sam2")

ENV = {"AUTOTRACK_SAM2_RANDOM_INIT": "1", "AUTOTRACK_SAM2_IMAGE_SIZE": "128",
       "AUTOTRACK_XMEM_RANDOM_INIT": "1", "AUTOTRACK_XMEM_SIZE": "96"}
SIZE = (480, 270)  # width, height
BOX = [60, 70, 260, 250]  # the bed's foot and the person beside it, in the halved frame
POLYGON = [300.0, 60.0, 420.0, 60.0, 420.0, 200.0, 300.0, 200.0]


def call(platform, body):
    platform, handler = platform
    return platform.call_handler(handler, nuclio_sdk.Event(body=body))


def ok_json(response) -> dict:
    assert response.status_code == 200, response.body
    return json.loads(response.body)


@pytest.fixture(scope="module")
def clip(bedroom_dir):
    """Frames 0-3 as sent (base64 JPEG) and as the function decodes them."""
    sent, decoded = [], []
    for index in range(4):
        frame = cv2.resize(cv2.imread(str(bedroom_dir / f"{index:05d}.jpg")), SIZE,
                           interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        sent.append(base64.b64encode(data).decode("ascii"))
        decoded.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return sent, decoded


def _platform(function: str):
    module = load_main(function)
    platform = nuclio_sdk.test.Platform()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        response = platform.call_handler(module.handler, nuclio_sdk.Event(body={}))
    assert response.status_code == 400  # refused, but init_context ran
    return platform, module.handler


def _function(platform):
    platform, handler = platform
    return platform._get_handler_context(handler).user_data.autotrack


@pytest.fixture(scope="module")
def interactor():
    return _platform("sam2-interactor")


@pytest.fixture(scope="module")
def sam2_tracker():
    return _platform("sam2-tracker")


def ui_mask(response: dict, height: int, width: int) -> np.ndarray:
    """What CVAT's UI makes of an interactor answer: mask2Rle(mask.flat()) + bounds."""
    flat = [v for row in response["mask"] for v in row]
    runs = [0] if flat[0] else []
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs += np.diff(np.concatenate([[0], edges, [len(flat)]])).tolist()
    return decode_cvat_mask([*runs, *response["bounds"]], height, width)


# --- interactor ----------------------------------------------------------------------------


def test_interactor_mask_is_cvats_format_and_the_models_pixels(interactor, clip):
    sent, decoded = clip
    body = {"image": sent[0], "pos_points": [[150, 160], [120, 200]], "neg_points": [[400, 40]],
            "obj_bbox": [[BOX[0], BOX[1]], [BOX[2], BOX[3]]]}
    answer = ok_json(call(interactor, body))
    model = _function(interactor).interactor
    direct = model.segment(decoded[0], ObjectPrompt(
        1, points=np.array([[150, 160], [120, 200], [400, 40]], np.float32),
        point_labels=np.array([1, 1, 0]), box=tuple(map(float, BOX))))
    height, width = decoded[0].shape[:2]
    assert direct.mask.any()
    assert np.array_equal(ui_mask(answer, height, width), direct.mask)
    x1, y1, x2, y2 = answer["bounds"]
    assert len(answer["mask"]) == y2 - y1 + 1 and len(answer["mask"][0]) == x2 - x1 + 1
    polygon = mask_to_polygon(direct.mask)
    assert answer["points"] == [[polygon[k], polygon[k + 1]] for k in range(0, len(polygon), 2)]
    assert answer["score"] == pytest.approx(direct.score, abs=1e-4)
    # a flat box, no negative points, and an unknown field that is ignored
    again = ok_json(call(interactor, {"image": sent[0], "pos_points": [[150, 160]],
                                      "neg_points": [], "obj_bbox": BOX, "extra": 1}))
    assert again["bounds"] and again["mask"]
    box_only = ok_json(call(interactor, {"image": sent[0], "pos_points": [], "neg_points": [],
                                         "obj_bbox": [[BOX[2], BOX[3]], [BOX[0], BOX[1]]]}))
    assert box_only["mask"]


def _interactor_bad_cases(image: str) -> list[tuple[str, object, int, str]]:
    big = base64.b64encode(cv2.imencode(".png", np.zeros((9000, 8000, 3), np.uint8))[1]).decode()
    return [
        ("not json", b"{nope", 400, "JSON"),
        ("list body", [1], 400, "object"),
        ("no prompt", {"image": image}, 400, "positive point"),
        ("only negative", {"image": image, "neg_points": [[5, 5]]}, 400, "positive point"),
        ("no image", {"pos_points": [[5, 5]]}, 400, "image"),
        ("bad base64", {"image": "!!", "pos_points": [[5, 5]]}, 400, "base64"),
        ("not an image", {"image": base64.b64encode(b"hello").decode(), "pos_points": [[5, 5]]},
         400, "image"),
        ("huge image", {"image": big, "pos_points": [[5, 5]]}, 413, "pixels"),
        ("points not a list", {"image": image, "pos_points": "5,5"}, 400, "pos_points"),
        ("point of 3", {"image": image, "pos_points": [[1, 2, 3]]}, 400, "[x, y]"),
        ("point text", {"image": image, "pos_points": [["a", 2]]}, 400, "numbers"),
        ("point bool", {"image": image, "pos_points": [[True, 2]]}, 400, "numbers"),
        ("NaN point", {"image": image, "pos_points": [[float("nan"), 2]]}, 400, "non-finite"),
        ("inf neg point", {"image": image, "pos_points": [[5, 5]],
                           "neg_points": [[float("inf"), 2]]}, 400, "non-finite"),
        ("point outside", {"image": image, "pos_points": [[481, 5]]}, 400, "outside"),
        ("negative point outside", {"image": image, "pos_points": [[5, 5]],
                                    "neg_points": [[5, -1]]}, 400, "outside"),
        ("too many points", {"image": image, "pos_points": [[5, 5]] * 65}, 413, "limit"),
        ("box of 3", {"image": image, "obj_bbox": [1, 2, 3]}, 400, "corners"),
        ("empty box", {"image": image, "obj_bbox": [[5, 5], [5, 50]]}, 400, "empty"),
        ("box outside", {"image": image, "obj_bbox": [[900, 900], [990, 990]]}, 400,
         "overlap"),
        ("box not numbers", {"image": image, "obj_bbox": [["a", 1], [2, 3]]}, 400, "numbers"),
        ("NaN box", {"image": image, "obj_bbox": [1, 2, float("nan"), 4]}, 400, "non-finite"),
    ]


def test_interactor_refuses_malformed_requests_with_a_clear_4xx(interactor, clip):
    cases = _interactor_bad_cases(clip[0][0])
    assert len(cases) >= 20
    for name, body, status, words in cases:
        response = call(interactor, body)
        assert response.status_code == status, (name, response.body)
        error = json.loads(response.body)
        assert error["status"] == status and words.lower() in error["error"].lower(), \
            (name, error)
    assert json.loads(call(interactor, {"image": "!!", "pos_points": [[5, 5]]}).body)[
        "field"] == "image"


# --- SAM2 tracker --------------------------------------------------------------------------


def _start_body(image: str, frame: np.ndarray) -> tuple[dict, list[ObjectPrompt]]:
    """A rectangle as CVAT's UI sends it, a polygon and a mask as shape objects."""
    height, width = frame.shape[:2]
    blob = np.zeros((height, width), bool)
    blob[150:230, 300:380] = True
    body = {"image": image, "shapes": [
        BOX, {"type": "polygon", "points": POLYGON},
        {"type": "mask", "points": encode_cvat_mask(blob), "label_id": 4}], "states": []}
    polygon = np.zeros((height, width), np.uint8)
    cv2.fillPoly(polygon, [np.reshape(POLYGON, (-1, 2)).astype(np.int32)], 1)
    prompts = [ObjectPrompt(1, box=tuple(map(float, BOX))),
               ObjectPrompt(2, mask=polygon.astype(bool)), ObjectPrompt(3, mask=blob)]
    return body, prompts


def _decoded(answer: dict, height: int, width: int) -> list[np.ndarray | None]:
    masks = []
    for kind, shape in zip(answer["types"], answer["shapes"]):
        masks.append(None if kind != "mask" or shape is None
                     else decode_cvat_mask(shape, height, width))
    return masks


def test_sam2_tracker_answers_match_the_segmenter_run_directly(sam2_tracker, clip):
    from autotrack.vos.sam2 import Sam2Segmenter

    sent, decoded = clip
    height, width = decoded[0].shape[:2]
    function = _function(sam2_tracker)
    body, prompts = _start_body(sent[0], decoded[0])
    answers = [ok_json(call(sam2_tracker, body))]
    for image in sent[1:3]:
        states = json.loads(json.dumps(answers[-1]["states"]))
        answers.append(ok_json(call(sam2_tracker, {"image": image, "shapes": [None] * 3,
                                                   "states": states})))
    assert function.tracker.reinits == 0  # the live session was used every time
    direct = Sam2Segmenter(next(iter(function.tracker.store._items.values())).tracker
                           .segmenter.model)
    expected = [direct.step(decoded[0], prompts), direct.step(decoded[1]),
                direct.step(decoded[2])]
    for answer, masks in zip(answers, expected):
        assert answer["types"] == ["rectangle", "polygon", "mask"]
        assert all(len(s) <= MAX_MASK_STATE_BYTES for s in answer["states"])
        rect, poly, mask = answer["shapes"]
        box = encode_cvat_mask(masks[1])
        assert box is not None, "random weights gave an empty mask; pick another prompt"
        x1, y1, x2, y2 = box[-4:]
        assert rect == [x1, y1, x2 + 1, y2 + 1]
        assert poly == mask_to_polygon(masks[2])
        assert mask == (encode_cvat_mask(masks[3]) or None)
        assert mask is None or np.array_equal(_decoded(answer, height, width)[2], masks[3])
    # every shape as a mask (AUTOTRACK_VOS_OUTPUT=mask)
    settings = function.settings
    try:
        function.settings = type(settings)(output="mask")
        state = json.loads(json.dumps(answers[-1]["states"]))
        as_masks = ok_json(call(sam2_tracker, {"image": sent[3], "states": state}))
    finally:
        function.settings = settings
    assert as_masks["types"] == ["mask"] * 3
    masks = direct.step(decoded[3])
    for shape, oid in zip(as_masks["shapes"], (1, 2, 3)):
        assert shape == (encode_cvat_mask(masks[oid]) or None)


def _follow(platforms, sent, *, clear=False) -> list[dict]:
    answers = [ok_json(call(platforms[0], {"image": sent[0], "shapes": [{
        "type": "polygon", "points": POLYGON}]}))]
    for k, image in enumerate(sent[1:3], start=1):
        platform = platforms[k % len(platforms)]
        if clear:
            _function(platform).tracker.store.clear()
        states = json.loads(json.dumps(answers[-1]["states"]))
        answers.append(ok_json(call(platform, {"image": image, "states": states})))
    return answers


def test_two_workers_sharing_no_memory_keep_the_track(sam2_tracker, clip):
    other = _platform("sam2-tracker")
    before = _function(sam2_tracker).tracker.reinits
    answers = _follow([sam2_tracker, other], clip[0])
    assert _function(other).tracker.reinits == 1  # frame 1: started again from the state
    assert _function(sam2_tracker).tracker.reinits == before + 1  # frame 2: from other's state
    for answer in answers:
        assert answer["types"] == ["polygon"] and len(answer["states"]) == 1
    state = MaskTrackState.decode(answers[-1]["states"][0], "sam2")
    assert state.step == 2 and state.object_id == 1
    # a worker that loses its sessions before every call answers the same
    again = _follow([sam2_tracker], clip[0], clear=True)
    assert [a["shapes"] for a in again] == [a["shapes"] for a in answers]


def _edit(state: str, mutate) -> str:
    envelope = json.loads(state)
    mutate(envelope)
    return json.dumps(envelope)


def _tracker_bad_cases(state: str, image: str) -> list[tuple[str, object, int, str]]:
    payload = MaskTrackState.decode(state, "sam2")
    raw = json.loads(state)["payload"]

    def signed(**changes):
        fields = {**{k: v for k, v in payload.__dict__.items()
                     if k not in ("kind", "frame_size", "stored_size", "prompt_jpeg")},
                  "frame_size": np.array(payload.frame_size, np.int32),
                  "stored_size": np.array(payload.stored_size, np.int32),
                  "prompt_jpeg": np.frombuffer(payload.prompt_jpeg, np.uint8),
                  "prompt_box": np.array(payload.prompt_box or (), np.float64),
                  "last_box": np.array(payload.last_box or (), np.float64)}
        fields.pop("shape_type")
        fields = {"shape_type": payload.shape_type, **fields, **changes}
        return encode_state("vos-sam2", 1, fields)

    return [
        ("not json", b"{nope", 400, "JSON"),
        ("nothing to do", {"image": image}, 400, "shapes"),
        ("no image", {"shapes": [BOX]}, 400, "image"),
        ("bad base64", {"image": "!!", "shapes": [BOX]}, 400, "base64"),
        ("shapes not a list", {"image": image, "shapes": "box"}, 400, "shapes"),
        ("shape a number", {"image": image, "shapes": [7]}, 400, "shape object"),
        ("short box", {"image": image, "shapes": [[1, 2, 3]]}, 400, "4 numbers"),
        ("NaN box", {"image": image, "shapes": [[1, 2, float("nan"), 4]]}, 400, "non-finite"),
        ("box outside", {"image": image, "shapes": [[900, 900, 990, 990]]}, 400, "overlap"),
        ("ellipse", {"image": image, "shapes": [{"type": "ellipse", "points": BOX}]}, 400,
         "ellipse"),
        ("rotated", {"image": image, "shapes": [{"type": "rectangle", "points": BOX,
                                                  "rotation": 30}]}, 400, "rotated"),
        ("shape without points", {"image": image, "shapes": [{"type": "mask"}]}, 400, "points"),
        ("polygon of 2 points", {"image": image, "shapes": [{"type": "polygon",
                                                             "points": [1, 2, 3, 4]}]}, 400,
         "at least 3"),
        ("polygon outside", {"image": image, "shapes": [{"type": "polygon", "points": [
            900, 900, 990, 900, 990, 990]}]}, 400, "covers no pixel"),
        ("mask outside", {"image": image, "shapes": [{"type": "mask", "points": [
            0, 4, 900, 900, 901, 901]}]}, 400, "outside"),
        ("mask runs wrong", {"image": image, "shapes": [{"type": "mask", "points": [
            1, 2, 10, 10, 11, 11]}]}, 400, "cover"),
        ("mask fractional", {"image": image, "shapes": [{"type": "mask", "points": [
            0.5, 3.5, 10, 10, 11, 11]}]}, 400, "whole numbers"),
        ("both null", {"image": image, "shapes": [None], "states": [None]}, 400, "both null"),
        ("more states than shapes", {"image": image, "shapes": [None], "states": [state, state]},
         400, "entries"),
        ("same state twice", {"image": image, "states": [state, state]}, 400, "repeats"),
        ("too many shapes", {"image": image, "shapes": [BOX] * 33}, 413, "limit"),
        ("bad conv_mask_to_poly", {"image": image, "states": [state], "conv_mask_to_poly": 1},
         400, "true or false"),
        ("state not a string", {"image": image, "states": [{"a": 1}]}, 400, "state string"),
        ("state garbage", {"image": image, "states": ["garbage"]}, 400, "not valid JSON"),
        ("state oversized", {"image": image, "states": ["x" * (MAX_MASK_STATE_BYTES + 1)]}, 413,
         "limit"),
        ("state edited step", {"image": image, "states": [_edit(
            state, lambda e: e["payload"].update(step=7))]}, 400, "digest"),
        ("state edited mask", {"image": image, "states": [_edit(
            state, lambda e: e["payload"]["last_mask"]["__ndarray__"].update(data="AAAA"))]},
         400, "digest"),
        ("state other kind", {"image": image, "states": [_edit(
            state, lambda e: e.update(kind="vos-xmem"))]}, 400, "vos-xmem"),
        ("state unknown version", {"image": image, "states": [_edit(
            state, lambda e: e.update(version=9))]}, 400, "version"),
        ("state SOT format", {"image": image, "states": [encode_state("sot-vittrack", 1, {})]},
         400, "sot-vittrack"),
        ("signed, unknown field", {"image": image, "states": [encode_state(
            "vos-sam2", 1, {**raw, "extra": 1})]}, 400, "unknown"),
        ("signed, bad shape type", {"image": image, "states": [signed(shape_type="ellipse")]},
         400, "shape_type"),
        ("signed, mask not of its size", {"image": image, "states": [signed(
            last_mask=np.array([0, 5, 0, 0, 9, 9], np.int32))]}, 400, "not a mask"),
        ("signed, not a JPEG", {"image": image, "states": [signed(
            prompt_jpeg=np.zeros(8, np.uint8))]}, 400, "JPEG"),
        ("signed, bad session", {"image": image, "states": [signed(session="../etc")]}, 400,
         "session"),
        ("signed, other frame size", {"image": image, "states": [signed(
            frame_size=np.array([540, 960], np.int32),
            prompt_box=np.array([1.0, 1, 50, 50]), last_box=np.array([], np.float64))]}, 400,
         "960x540"),
        ("signed, box outside", {"image": image, "states": [signed(
            last_box=np.array([0.0, 0, 999, 10]))]}, 400, "outside"),
    ]


def test_sam2_tracker_refuses_malformed_requests_and_states(sam2_tracker, clip):
    sent = clip[0]
    state = ok_json(call(sam2_tracker, {"image": sent[0], "shapes": [BOX]}))["states"][0]
    cases = _tracker_bad_cases(state, sent[1])
    assert len(cases) >= 20
    for name, body, status, words in cases:
        response = call(sam2_tracker, body)
        assert response.status_code == status, (name, response.body)
        error = json.loads(response.body)
        assert error["status"] == status and words.lower() in error["error"].lower(), \
            (name, error)
        assert "field" in error or name in ("not json",), (name, error)
    # still works; conv_mask_to_poly turns masks into polygons, a rectangle stays one
    answer = ok_json(call(sam2_tracker, {"image": sent[1], "states": [state],
                                         "conv_mask_to_poly": True}))
    assert answer["types"] == ["rectangle"]


def test_states_from_another_key_are_refused(sam2_tracker, clip, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "first-secret")
    state = ok_json(call(sam2_tracker, {"image": clip[0][0], "shapes": [BOX]}))["states"][0]
    assert json.loads(state)["digest"].startswith("hmac-sha256:")
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "other-secret")
    response = call(sam2_tracker, {"image": clip[0][1], "states": [state]})
    assert response.status_code == 400 and "digest" in json.loads(response.body)["error"]


# --- XMem tracker --------------------------------------------------------------------------


def test_xmem_tracker_keeps_the_track_across_workers_and_refuses_sam2_states(clip,
                                                                           sam2_tracker):
    a, b = _platform("xmem"), _platform("xmem")
    sent, decoded = clip
    height, width = decoded[0].shape[:2]
    first = ok_json(call(a, {"image": sent[0], "shapes": [
        BOX, {"type": "polygon", "points": POLYGON}], "conv_mask_to_poly": False}))
    moved = ok_json(call(b, {"image": sent[1], "states": json.loads(json.dumps(
        first["states"]))}))
    assert _function(a).tracker.reinits == 0 and _function(b).tracker.reinits == 1
    for answer in (first, moved):
        assert answer["types"] == ["rectangle", "polygon"]
        x1, y1, x2, y2 = answer["shapes"][0]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    sam2_state = ok_json(call(sam2_tracker, {"image": sent[0], "shapes": [BOX]}))["states"][0]
    response = call(b, {"image": sent[1], "states": [sam2_state]})
    assert response.status_code == 400 and "vos-sam2" in json.loads(response.body)["error"]


# --- before init, and the yaml -------------------------------------------------------------


def test_handlers_before_init_answer_503():
    from autotrack.cvat.nuclio import interactor as lambda_interactor
    from autotrack.cvat.nuclio import mask_tracker as lambda_mask_tracker

    for module in (lambda_interactor, lambda_mask_tracker):
        status, body = module.handle(SimpleNamespace(user_data=SimpleNamespace()),
                                     SimpleNamespace(body={}))
        assert status == 503 and "not initialised" in json.loads(body)["error"]


CONFIGS = sorted(p for name in ("sam2-interactor", "sam2-tracker", "xmem")
                 for p in (REPO_ROOT / "serverless" / name / "nuclio").glob("function*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_mask_function_yaml_carries_what_cvat_and_nuctl_read(config):
    function = config.parents[1].name
    document = yaml.safe_load(config.read_text())
    metadata = document["metadata"]
    annotations = metadata["annotations"]
    assert metadata["namespace"] == "cvat" and len(metadata["name"]) <= 63
    assert all(isinstance(v, str) for v in annotations.values())
    assert annotations["spec"] == "" and annotations["framework"] == "pytorch"
    if function == "sam2-interactor":
        assert annotations["type"] == "interactor" and annotations["version"] == "2"
        assert annotations["min_pos_points"] == "0" and annotations["min_neg_points"] == "0"
        assert annotations["startswith_box_optional"] == "true"
    else:
        assert annotations["type"] == "tracker"
    spec = document["spec"]
    assert spec["handler"] == "main:handler" and spec["runtime"] == "python:3.11"
    env = {e["name"]: e["value"] for e in spec["env"]}
    assert all(isinstance(v, str) for v in env.values())
    gpu = config.name == "function-gpu.yaml"
    assert env["AUTOTRACK_DEVICE"] == ("cuda:0" if gpu else "cpu")
    variable = "AUTOTRACK_XMEM_CHECKPOINT" if function == "xmem" else "AUTOTRACK_SAM2_CHECKPOINT"
    runs = " && ".join(d["value"] for d in spec["build"]["directives"]["postCopy"])
    assert "/opt/nuclio/*.whl" in runs and env[variable] in runs  # the weights are baked in
    assert not any(k.endswith("RANDOM_INIT") for k in env)
    trigger = spec["triggers"]["myHttpTrigger"]
    assert trigger["numWorkers"] == 1 and trigger["attributes"]["maxRequestBodySize"] > 0
    assert ("nvidia.com/gpu" in spec.get("resources", {}).get("limits", {})) == gpu
    cpu = yaml.safe_load((config.parent / "function.yaml").read_text())
    assert cpu["metadata"] == metadata
    assert "def handler(context, event)" in (config.parent / "main.py").read_text()


def test_concurrent_first_calls_never_share_a_segmenter():
    """Two sessions started at once get two segmenters, never one memory between them."""
    import threading
    import time

    from autotrack.vos.factory import _FirstThenBuild
    from autotrack.vos.sessions import MaskTracker
    from autotrack.sot.session import SessionStore

    class SlowFirst(_FirstThenBuild):  # reading the prebuilt one leaves time to switch threads
        @property
        def _first(self):
            value = self.__dict__["_first"]
            time.sleep(0.05)
            return value

        @_first.setter
        def _first(self, value):
            self.__dict__["_first"] = value

    prebuilt = object()
    factory = SlowFirst(prebuilt, object)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(factory())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 2 and got.count(prebuilt) == 1

    tracker = MaskTracker("xmem", lambda: None, SessionStore())
    held: list[bool] = []
    tracker.factory = lambda: held.append(tracker._lock.locked())
    tracker._segmenter()
    assert held == [True]  # any factory is called under the tracker's lock
    assert not hasattr(tracker, "_spares")  # no pool of segmenters to hand out twice
