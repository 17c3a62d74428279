"""serverless/sam2-interactor, sam2-tracker and xmem: CVAT's interactor and tracker requests
through nuclio-sdk's test platform, on bedroom frames (the SAM2 demo video, halved to 480x270)
with seeded random weights at a small working size (AUTOTRACK_SAM2_IMAGE_SIZE=128,
AUTOTRACK_XMEM_SIZE=96), every state through json.dumps/loads as CVAT keeps it.

Random weights make no claim about quality; what is checked is the door: each answer is in the
format CVAT's UI reads and decodes to exactly the pixels the model gives when run directly on
the same decoded frames, states resume on a worker that never saw the object, and malformed
requests get a clear 4xx. What CVAT's lambda manager and UI make of the answers (interactor:
the UIs before 2.60 and from 2.60; trackers: rectangles only) is modelled from CVAT's source
in tests/cvat_ui.py and checked at the end of this file, on 960x540 frames for the interactor.
"""

from __future__ import annotations

import base64
import gzip
import json
from types import SimpleNamespace

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest
import yaml

import cvat_ui
from autotrack.masks import encode_cvat_mask, mask_box, mask_to_polygon
from autotrack.state import encode_state
from autotrack.vos.base import InteractorResult, ObjectPrompt
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


def ui_masks(response: dict, height: int, width: int) -> list[np.ndarray | None]:
    """The masks CVAT's UIs before 2.60 and from 2.60 draw from an interactor answer."""
    return list(cvat_ui.interactor_masks(response, height, width).values())


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
    for drawn in ui_masks(answer, height, width):
        assert np.array_equal(drawn, direct.mask)
    assert answer["bounds"] == [0, 0, width - 1, height - 1] and "shapes" not in answer
    assert len(answer["mask"]) == height and len(answer["mask"][0]) == width
    polygon = mask_to_polygon(direct.mask)
    assert answer["points"] == [[polygon[k], polygon[k + 1]] for k in range(0, len(polygon), 2)]
    assert answer["score"] == pytest.approx(direct.score, abs=1e-4)
    # a flat box, no negative points, and an unknown field that is ignored
    again = ok_json(call(interactor, {"image": sent[0], "pos_points": [[150, 160]],
                                      "neg_points": [], "obj_bbox": BOX, "extra": 1}))
    assert again["bounds"] and again["mask"]
    box_only = ok_json(call(interactor, {"image": sent[0], "pos_points": [], "neg_points": [],
                                         "obj_bbox": [[BOX[2], BOX[3]], [BOX[0], BOX[1]]]}))
    assert np.array_equal(np.array(box_only["mask"], bool), model.segment(
        decoded[0], ObjectPrompt(1, box=tuple(map(float, BOX)))).mask)


def _interactor_bad_cases(image: str) -> list[tuple[str, object, int, str]]:
    big = base64.b64encode(cv2.imencode(".png", np.zeros((9000, 8000, 3), np.uint8))[1]).decode()
    return [
        ("not json", b"{nope", 400, "JSON"),
        ("list body", [1], 400, "object"),
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
    assert len(cases) >= 20  # no prompt at all is not one: it answers an empty mask (below)
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


def _box(mask: np.ndarray, fallback: list[float]) -> list[float]:
    """The rectangle a tracker answers for ``mask``: its box in pixel edges, else ``fallback``."""
    box = mask_box(mask)
    if box is None:
        return fallback
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 + 1), float(y2 + 1)]


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
    assert mask_box(expected[0][1]) is not None, "random weights gave an empty mask"
    # an object lost from the start keeps the box it was started from
    last = [[float(v) for v in BOX], _box(prompts[1].mask, []), _box(prompts[2].mask, [])]
    for answer, masks in zip(answers, expected):
        assert set(answer) == {"shapes", "states"}  # rectangles only: no types, no masks
        assert all(len(s) <= MAX_MASK_STATE_BYTES for s in answer["states"])
        last = [_box(masks[oid], last[k]) for k, oid in enumerate((1, 2, 3))]
        assert answer["shapes"] == last  # a polygon or mask prompt is answered as its box
        for x1, y1, x2, y2 in answer["shapes"]:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_masks_and_polygons_are_not_a_cvat_tracker_output():
    from autotrack.cvat.nuclio.mask_tracker import MaskTrackerSettings

    for value in ("", "shape", "rectangle"):  # the old default is still read as rectangles
        MaskTrackerSettings.from_env({"AUTOTRACK_VOS_OUTPUT": value})
    for value in ("mask", "polygon"):
        with pytest.raises(ValueError, match="task annotate --segmenter"):
            MaskTrackerSettings.from_env({"AUTOTRACK_VOS_OUTPUT": value})


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
        assert len(answer["shapes"]) == len(answer["states"]) == 1
        assert len(answer["shapes"][0]) == 4
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
    # still works; conv_mask_to_poly (no tracker field of CVAT's) is ignored: a box comes back
    answer = ok_json(call(sam2_tracker, {"image": sent[1], "states": [state],
                                         "conv_mask_to_poly": True}))
    assert set(answer) == {"shapes", "states"} and len(answer["shapes"][0]) == 4


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
        BOX, {"type": "polygon", "points": POLYGON}]}))
    moved = ok_json(call(b, {"image": sent[1], "states": json.loads(json.dumps(
        first["states"]))}))
    assert _function(a).tracker.reinits == 0 and _function(b).tracker.reinits == 1
    for answer in (first, moved):
        assert set(answer) == {"shapes", "states"} and len(answer["shapes"]) == 2
        for x1, y1, x2, y2 in answer["shapes"]:
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
    assert "AUTOTRACK_VOS_OUTPUT" not in env  # CVAT's tracker UI takes rectangles only
    assert "supported_shape_types" not in annotations
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


# --- through CVAT's lambda manager and UI (tests/cvat_ui.py) --------------------------------

FULL = (960, 540)  # width, height of the frames the interactor answers are measured on
ANSWER_LIMIT = 200_000  # bytes on the wire (gzip) for one interactor answer
GZIP = {"Accept-Encoding": "gzip, deflate"}  # what CVAT's lambda manager (requests) sends


def _rect_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The inclusive pixel box [x1, y1, x2, y2] on a FULL frame."""
    mask = np.zeros(FULL[::-1], bool)
    mask[y1:y2 + 1, x1:x2 + 1] = True
    return mask


class Scripted:
    """An interactor that answers the mask it is given, whatever the prompt."""

    def __init__(self, mask: np.ndarray, score: float = 0.875) -> None:
        self.mask, self.score, self.calls = mask, score, 0

    def segment(self, image, prompt) -> InteractorResult:
        self.calls += 1
        return InteractorResult(self.mask.copy(), self.score)


@pytest.fixture(scope="module")
def frame_960(bedroom_dir) -> tuple[str, np.ndarray]:
    """Bedroom frame 0 at 960x540, as sent (base64 JPEG) and as decoded."""
    frame = cv2.resize(cv2.imread(str(bedroom_dir / "00000.jpg")), FULL,
                       interpolation=cv2.INTER_AREA)
    data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return base64.b64encode(data).decode("ascii"), cv2.imdecode(np.frombuffer(data, np.uint8),
                                                                 cv2.IMREAD_COLOR)


def call_gzip(platform, body) -> tuple[dict, int]:
    """The answer as CVAT's lambda manager reads it (requests decodes gzip) and its size on
    the wire."""
    platform, handler = platform
    response = platform.call_handler(handler, nuclio_sdk.Event(body=body, headers=GZIP))
    assert response.status_code == 200, response.body
    wire = response.body if isinstance(response.body, bytes) else response.body.encode()
    if response.headers.get("Content-Encoding") == "gzip":
        return json.loads(gzip.decompress(wire)), len(wire)
    return json.loads(wire), len(wire)


@pytest.fixture
def scripted(interactor):
    """The SAM2 interactor function with its model swapped for :class:`Scripted`."""
    function = _function(interactor)
    model = function.interactor

    def use(mask: np.ndarray) -> Scripted:
        function.interactor = Scripted(mask)
        return function.interactor

    yield use
    function.interactor = model


SCRIPTED_MASKS = {
    "box [400, 200, 599, 349]": _rect_mask(400, 200, 599, 349),
    # two parts touching all four edges: bottom-left and top-right corners
    "edges": _rect_mask(0, 440, 129, 539) | _rect_mask(900, 0, 959, 59),
    "whole frame": _rect_mask(0, 0, 959, 539),
    "one pixel": _rect_mask(959, 539, 959, 539),
}


@pytest.mark.parametrize("name", SCRIPTED_MASKS)
def test_interactor_masks_land_on_their_pixels_in_every_cvat_ui(interactor, scripted, frame_960,
                                                                name):
    """Before 2.60 (rle + bounds, polygon from points) and from 2.60 (rle at the top-left,
    bounds ignored) the UI draws exactly the model's pixels; the answer is under 200 KB."""
    mask = SCRIPTED_MASKS[name]
    scripted(mask)
    width, height = FULL
    answer, wire = call_gzip(interactor, {"image": frame_960[0], "pos_points": [[500, 270]],
                                          "neg_points": []})
    assert wire <= ANSWER_LIMIT, f"{name}: {wire} bytes"
    drawn = cvat_ui.interactor_masks(answer, height, width)
    for version, placed in drawn.items():
        assert placed is not None and np.array_equal(placed, mask), version
    assert answer["score"] == 0.875
    outline = cvat_ui.interactor_pre_260(answer, height, width).polygon
    xs, ys = zip(*outline)  # the "convert masks to polygons" outline, in frame pixels
    x1, y1, x2, y2 = mask_box(mask)
    assert x1 <= min(xs) and max(xs) <= x2 and y1 <= min(ys) and max(ys) <= y2
    assert mask[int(ys[0]), int(xs[0])]


def test_real_sam2_answer_on_a_960x540_frame_is_small_and_exact(interactor, frame_960):
    sent, decoded = frame_960
    body = {"image": sent, "pos_points": [[450, 300]], "neg_points": [[50, 50]],
            "obj_bbox": [[120, 140], [520, 500]]}
    answer, wire = call_gzip(interactor, body)
    direct = _function(interactor).interactor.segment(decoded, ObjectPrompt(
        1, points=np.array([[450, 300], [50, 50]], np.float32), point_labels=np.array([1, 0]),
        box=(120.0, 140.0, 520.0, 500.0))).mask
    assert direct.any() and wire <= ANSWER_LIMIT
    for placed in cvat_ui.interactor_masks(answer, FULL[1], FULL[0]).values():
        assert np.array_equal(placed, direct)
    print(f"SAM2 (random weights) answer on 960x540: {wire} bytes gzip, "
          f"{len(json.dumps(answer, separators=(',', ':')))} plain")


def test_worst_case_answer_is_under_the_limit_without_losing_a_pixel(interactor, scripted,
                                                                    frame_960):
    """Salt-and-pepper noise (every other pixel set at random) is the least compressible mask;
    even that stays under 200 KB on a 960x540 frame."""
    noise = np.random.default_rng(1).random(FULL[::-1]) < 0.5
    scripted(noise)
    answer, wire = call_gzip(interactor, {"image": frame_960[0], "pos_points": [[5, 5]]})
    assert wire <= ANSWER_LIMIT, wire
    assert np.array_equal(cvat_ui.interactor_masks(answer, FULL[1], FULL[0])["2.60+"], noise)


def test_empty_prompts_and_empty_masks_draw_nothing_without_an_error(interactor, scripted,
                                                                     frame_960):
    """All clicks removed, only negative clicks, or a model that finds nothing: 200 with an
    all-zero frame mask and no points, which both UIs draw as nothing (a 400 would pop up
    "Interaction error occurred")."""
    sent = frame_960[0]
    model = scripted(np.zeros(FULL[::-1], bool))
    bodies = [{"image": sent, "pos_points": [], "neg_points": []},
              {"image": sent, "pos_points": [], "neg_points": [[10, 10], [900, 500]]},
              {"image": sent, "pos_points": [], "neg_points": [], "obj_bbox": None},
              {"image": sent, "pos_points": [], "neg_points": [], "obj_bbox": []},
              {"image": sent}]
    for body in bodies:
        answer, wire = call_gzip(interactor, body)
        assert answer["points"] == [] and not any(map(any, answer["mask"])), body.keys()
        assert cvat_ui.interactor_masks(answer, FULL[1], FULL[0]) == {
            "pre-2.60": None, "2.60+": None}
    assert model.calls == 0  # nothing to segment: the model is not run
    answer, _ = call_gzip(interactor, {"image": sent, "pos_points": [[480, 270]]})
    assert model.calls == 1 and answer["points"] == []
    assert cvat_ui.interactor_masks(answer, FULL[1], FULL[0]) == {"pre-2.60": None,
                                                                  "2.60+": None}


def test_the_cvat_model_reproduces_the_reported_failures():
    """tests/cvat_ui.py fails where CVAT failed on the old answers (issue 11)."""
    height, width = FULL[1], FULL[0]
    mask = SCRIPTED_MASKS["box [400, 200, 599, 349]"]
    cropped = {"mask": mask[200:350, 400:600].astype(int).tolist(),
               "bounds": [400, 200, 599, 349], "points": [[400, 200], [599, 200], [599, 349]]}
    drawn = cvat_ui.interactor_masks(cropped, height, width)
    assert np.array_equal(drawn["pre-2.60"], mask)  # the old UI used bounds
    assert mask_box(drawn["2.60+"]) == (0, 0, 199, 149)  # 2.60+: the top-left corner
    zeros = {"mask": np.zeros((height, width), int).tolist()}
    with pytest.raises(cvat_ui.UIError, match="reduce"):  # an empty mask without points
        cvat_ui.interactor_pre_260(zeros, height, width)
    assert cvat_ui.interactor_260(zeros, height, width) == []
    for version in cvat_ui.UI_VERSIONS.values():
        with pytest.raises(cvat_ui.UIError):
            version({"mask": [], "points": []}, height, width)
    # trackers: CVAT refuses polygons and masks unless declared, and then fails on our answers
    rectangle = {"type": "rectangle", "points": [1, 2, 30, 40]}
    polygon = {"type": "polygon", "points": [1, 2, 30, 2, 30, 40]}
    with pytest.raises(cvat_ui.ValidationError, match="'polygon'"):
        cvat_ui.tracker_request("img", None, shapes=[polygon])
    assert cvat_ui.tracker_request("img", None, shapes=[rectangle])["shapes"] == [[1, 2, 30, 40]]
    declared = cvat_ui.supported_shape_types({"supported_shape_types": "rectangle, polygon"})
    assert declared == ["rectangle", "polygon"]
    answer = cvat_ui.tracker_answer({"shapes": [[1, 2, 30, 40]], "states": ["s"]}, declared)
    with pytest.raises(cvat_ui.UIError):  # bare points where the UI reads shape.points
        cvat_ui.ui_tracked_boxes(answer, 1)
    for newest in (True, False):  # a lost object's null fails the whole batch
        answer = cvat_ui.tracker_answer({"shapes": [None], "states": ["s"]}, None,
                                        newest=newest)
        with pytest.raises(cvat_ui.UIError, match="null"):
            cvat_ui.ui_tracked_boxes(answer, 1, newest=newest)


class Losing:
    """A segmenter that loses every object once ``LOSING["on"]`` is set."""

    switch = {"on": False}

    def __init__(self, inner) -> None:
        self.inner = inner

    def step(self, image, prompts=()):
        masks = self.inner.step(image, prompts)
        if self.switch["on"]:
            return {oid: np.zeros_like(m, bool) for oid, m in masks.items()}
        return masks

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("kind", ["sam2", "xmem"])
@pytest.mark.parametrize("newest", [True, False], ids=["cvat-2.64", "before-PR9548"])
def test_tracker_answers_decode_in_cvats_ui(kind, newest, clip, sam2_tracker):
    """A rectangle started, followed, then lost: every answer, through the lambda manager both
    ways (yaml annotations as deployed) and the UI's trackedRectangleMapper, is a valid box;
    a lost object keeps its last box."""
    platform = sam2_tracker if kind == "sam2" else _platform("xmem")
    function = _function(platform)
    annotations = yaml.safe_load((REPO_ROOT / "serverless" / (
        "sam2-tracker" if kind == "sam2" else "xmem") / "nuclio" / "function.yaml").read_text()
    )["metadata"]["annotations"]
    factory = function.tracker.factory
    function.tracker.factory = lambda: Losing(factory())
    sent, decoded = clip
    height, width = decoded[0].shape[:2]
    calls = []

    def call_function(body: dict) -> dict:
        calls.append(body)
        if len(calls) == 4:  # the fourth frame: every object is lost
            Losing.switch["on"] = True
        return ok_json(call(platform, json.loads(json.dumps(body))))

    try:
        boxes = cvat_ui.track_through_cvat(call_function, sent, [BOX, [300, 60, 420, 200]],
                                           annotations, newest=newest)
    finally:
        Losing.switch["on"] = False
        function.tracker.factory = factory
    assert len(boxes) == 4 and all(len(frame) == 2 for frame in boxes)
    assert all(s is None for s in calls[1]["shapes"]) if newest else calls[1]["shapes"]
    for frame in boxes:
        for x1, y1, x2, y2 in frame:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert boxes[3] == boxes[2]  # lost on the last frame: the last box again
