"""serverless/vittrack (and nanotrack): CVAT ``type: tracker`` functions driven through
nuclio-sdk's test platform, one call per frame, states going through JSON as CVAT keeps them.

The reference track is a person in vtest.avi frames 300-399 as YOLOX-Nano sees it, chained
frame to frame by IoU. VitTrack is started from the detector's box on frame 300 and must stay
at IoU >= 0.5 with the reference on at least 90% of the frames where the reference exists.
"""

from __future__ import annotations

import base64
import json

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest

from autotrack.geometry import iou_matrix
from autotrack.sot import MAX_SOT_STATE_BYTES
from autotrack.state import encode_state
from conftest import MODELS_DIR, REPO_ROOT
from helpers import load_main

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

START, COUNT = 300, 100
PERSON_NEAR = (315.0, 211.0, 347.0, 295.0)  # the person walking left of centre at frame 300


def call(platform, handler, body):
    return platform.call_handler(handler, nuclio_sdk.Event(body=body))


def ok_json(response) -> dict:
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def b64jpeg(frame: np.ndarray) -> str:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


@pytest.fixture(scope="module")
def clip(vtest_video):
    cap = cv2.VideoCapture(str(vtest_video))
    frames = []
    for index in range(START + COUNT):
        ok, frame = cap.read()
        assert ok
        if index >= START:
            frames.append(frame)
    cap.release()
    return frames, [b64jpeg(f) for f in frames]


@pytest.fixture(scope="module")
def reference(clip):
    """The person's detector boxes, chained by IoU (None where the chain has no box)."""
    from autotrack.detectors import load_detector

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        detector = load_detector("yolox-nano")
    frames, _ = clip
    people = []
    for frame in frames:
        d = detector.detect(frame)
        people.append(d.boxes[(d.class_ids == 0) & (d.scores >= 0.3)])
    first = people[0][iou_matrix(np.array([PERSON_NEAR]), people[0])[0].argmax()]
    assert iou_matrix(np.array([PERSON_NEAR]), first[None])[0, 0] > 0.7
    chain, prev = [first], first
    for boxes in people[1:]:
        ious = iou_matrix(prev[None], boxes)[0] if len(boxes) else np.zeros(0)
        if len(ious) and ious.max() >= 0.3:
            prev = boxes[ious.argmax()]
            chain.append(prev)
        else:
            chain.append(None)
    assert sum(b is not None for b in chain) >= 95
    assert iou_matrix(first[None], prev[None])[0, 0] < 0.3  # the person really moves
    return chain


def _platform(function: str, env: dict[str, str] | None = None):
    module = load_main(function)
    platform = nuclio_sdk.test.Platform()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        response = call(platform, module.handler, {})  # refused, but runs init_context
    assert response.status_code == 400
    return platform, module.handler


def _function(platform):
    platform, handler = platform
    return platform._get_handler_context(handler).user_data.autotrack


@pytest.fixture(scope="module")
def vittrack():
    return _platform("vittrack")


def track(platforms, images, first_box, *, clear_sessions=False):
    """Start on images[0], then one call per frame, cycling through the platforms; every
    state goes through json.dumps/loads as CVAT stores it. Returns boxes and state sizes."""
    platform, handler = platforms[0]
    result = ok_json(call(platform, handler, {"image": images[0], "shapes": [list(first_box)],
                                              "states": []}))
    boxes, sizes = [result["shapes"][0]], [len(result["states"][0])]
    states = json.loads(json.dumps(result["states"]))
    for k in range(1, len(images)):
        platform, handler = platforms[k % len(platforms)]
        if clear_sessions:
            _function((platform, handler)).tracker.store.clear()
        result = ok_json(call(platform, handler, {"image": images[k], "shapes": [None],
                                                  "states": states}))
        assert len(result["shapes"]) == len(result["states"]) == 1
        boxes.append(result["shapes"][0])
        sizes.append(len(result["states"][0]))
        states = json.loads(json.dumps(result["states"]))
    return boxes, sizes


def hit_rate(boxes, chain) -> float:
    hits = [iou_matrix(np.array([b]), c[None])[0, 0] >= 0.5
            for b, c in zip(boxes[1:], chain[1:]) if c is not None]
    return sum(hits) / len(hits)


def test_vittrack_follows_a_person_through_100_frames(vittrack, clip, reference):
    before = _function(vittrack).tracker.reinits
    boxes, sizes = track([vittrack], clip[1], reference[0].tolist())
    assert hit_rate(boxes, reference) >= 0.9
    assert max(sizes) <= MAX_SOT_STATE_BYTES
    assert _function(vittrack).tracker.reinits == before  # the live session was used


def test_two_workers_sharing_no_memory_keep_the_track(clip, reference):
    a, b = _platform("vittrack"), _platform("vittrack")
    boxes, _ = track([a, b], clip[1], reference[0].tolist())
    assert hit_rate(boxes, reference) >= 0.9
    assert _function(a).tracker.reinits >= 49 and _function(b).tracker.reinits >= 49
    # a worker that loses every session (restart before each call) tracks the same way
    again, _ = track([_platform("vittrack")], clip[1], reference[0].tolist(),
                     clear_sessions=True)
    assert again == boxes


def test_nanotrack_handler_tracks_and_refuses_vittrack_state(clip, reference, vittrack):
    nano = _platform("nanotrack")
    boxes, sizes = track([nano], clip[1][:30], reference[0].tolist())
    assert hit_rate(boxes, reference[:30]) >= 0.9 and max(sizes) <= MAX_SOT_STATE_BYTES
    vit_state = ok_json(call(*vittrack, {"image": clip[1][0], "shapes": [[300, 200, 340, 290]],
                                         "states": []}))["states"][0]
    response = call(*nano, {"image": clip[1][1], "states": [vit_state]})
    assert response.status_code == 400 and "sot-vittrack" in json.loads(response.body)["error"]


def test_several_objects_and_cvat_shape_objects(vittrack, clip):
    platform, handler = vittrack
    body = {"image": clip[1][0], "shapes": [
        [315, 211, 347, 295],
        {"type": "rectangle", "points": [232, 372, 290, 512], "rotation": 0, "label_id": 3},
    ], "states": []}
    first = ok_json(call(platform, handler, body))
    assert len(first["shapes"]) == len(first["states"]) == 2
    nxt = ok_json(call(platform, handler, {"image": clip[1][1], "shapes": [None, None],
                                           "states": first["states"]}))
    assert len(nxt["shapes"]) == 2 and all(len(s) == 4 for s in nxt["shapes"])
    # an old UI sending both shapes and states: the state wins, a new shape starts a track
    mixed = ok_json(call(platform, handler, {"image": clip[1][2],
                                             "shapes": [None, [10, 10, 60, 90]],
                                             "states": [nxt["states"][0]]}))
    assert len(mixed["states"]) == 2


def _valid_state(vittrack, clip) -> str:
    return ok_json(call(*vittrack, {"image": clip[1][0], "shapes": [[315, 211, 347, 295]],
                                    "states": []}))["states"][0]


def _edit(state: str, mutate) -> str:
    envelope = json.loads(state)
    mutate(envelope)
    return json.dumps(envelope)


def request_cases(state: str, image: str, max_state_bytes: int
                  ) -> list[tuple[str, object, int, str]]:
    """(name, body, status, words in the error) of malformed tracker requests: what every
    box tracker refuses whatever its state holds."""
    box = [315, 211, 347, 295]
    return [
        ("not json", b"{nope", 400, "JSON"),
        ("list body", [1, 2], 400, "object"),
        ("nothing to do", {"image": image}, 400, "shapes"),
        ("no image", {"shapes": [box], "states": []}, 400, "image"),
        ("bad base64", {"image": "!!notbase64", "shapes": [box]}, 400, "base64"),
        ("not an image", {"image": base64.b64encode(b"hello world").decode(), "shapes": [box]},
         400, "image"),
        ("image a number", {"image": 7, "shapes": [box]}, 400, "image"),
        ("shapes not a list", {"image": image, "shapes": "box"}, 400, "shapes"),
        ("short box", {"image": image, "shapes": [[1, 2, 3]]}, 400, "4 numbers"),
        ("text in box", {"image": image, "shapes": [[1, "a", 3, 4]]}, 400, "numbers"),
        ("inverted box", {"image": image, "shapes": [[50, 50, 10, 10]]}, 400, "x2 > x1"),
        ("nan box", {"image": image, "shapes": [[1, 2, float("nan"), 4]]}, 400, "finite"),
        ("box outside", {"image": image, "shapes": [[5000, 5000, 5100, 5100]]}, 400, "overlap"),
        ("polygon", {"image": image, "shapes": [{"type": "polygon", "points": box}]}, 400,
         "rectangles only"),
        ("rotated", {"image": image, "shapes": [{"type": "rectangle", "points": box,
                                                  "rotation": 30}]}, 400, "rotated"),
        ("both null", {"image": image, "shapes": [None], "states": [None]}, 400, "both null"),
        ("more states than shapes", {"image": image, "shapes": [None], "states": [state, state]},
         400, "entries"),
        ("too many shapes", {"image": image, "shapes": [box] * 65}, 413, "limit"),
        ("state not a string", {"image": image, "states": [{"a": 1}]}, 400, "state string"),
        ("state garbage", {"image": image, "states": ["garbage"]}, 400, "not valid JSON"),
        ("state oversized", {"image": image, "states": ["x" * (max_state_bytes + 1)]}, 413,
         "limit"),
        ("state unknown version", {"image": image, "states": [_edit(
            state, lambda e: e.update(version=99))]}, 400, "version"),
        ("state wrong format", {"image": image, "states": [json.dumps({"a": 1})]}, 400,
         "autotrack-state"),
    ]


def _bad_cases(state: str, image: str) -> list[tuple[str, object, int, str]]:
    payload = json.loads(state)["payload"]
    foreign_digest = encode_state("sot-vittrack", 1, {"x": 1})
    return request_cases(state, image, MAX_SOT_STATE_BYTES) + [
        ("state edited box", {"image": image, "states": [_edit(
            state, lambda e: e["payload"]["box"]["__ndarray__"].update(
                data=base64.b64encode(np.array([1, 2, 3, 4], "<f8").tobytes()).decode()))]},
         400, "digest"),
        ("state edited session", {"image": image, "states": [_edit(
            state, lambda e: e["payload"].update(session="A" * 32))]}, 400, "digest"),
        ("state other kind", {"image": image, "states": [_edit(
            state, lambda e: e.update(kind="bytetrack"))]}, 400, "bytetrack"),
        ("state digest of other payload", {"image": image, "states": [_edit(
            state, lambda e: e.update(digest=json.loads(foreign_digest)["digest"]))]}, 400,
         "digest"),
        ("state valid digest, missing fields", {"image": image, "states": [encode_state(
            "sot-vittrack", 1, {"box": np.array([1.0, 2, 30, 40])})]}, 400, "field"),
        ("state valid digest, bad template", {"image": image, "states": [encode_state(
            "sot-vittrack", 1, {**payload, "template": np.zeros(10, np.uint8)})]}, 400,
         "JPEG"),
        ("state valid digest, NaN-free bad box", {"image": image, "states": [encode_state(
            "sot-vittrack", 1, {**payload, "box": np.array([9.0, 9, 1, 1])})]}, 400, "x2 > x1"),
        ("state valid digest, bad session", {"image": image, "states": [encode_state(
            "sot-vittrack", 1, {**payload, "session": "../../etc"})]}, 400, "session"),
    ]


def test_malformed_requests_and_states_get_a_clear_4xx(vittrack, clip):
    state = _valid_state(vittrack, clip)
    for name, body, status, words in _bad_cases(state, clip[1][1]):
        response = call(*vittrack, body)
        assert response.status_code == status, (name, response.body)
        error = json.loads(response.body)
        assert error["status"] == status and words.lower() in error["error"].lower(), \
            (name, error)
    # the function still works afterwards
    ok_json(call(*vittrack, {"image": clip[1][1], "states": [state]}))


@pytest.mark.parametrize("function", ["vittrack", "bytetrack"])
def test_hmac_key_refuses_states_from_another_key(clip, monkeypatch, function):
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "first-secret")
    platform = _platform(function)
    state = ok_json(call(*platform, {"image": clip[1][0], "shapes": [[315, 211, 347, 295]],
                                     "states": []}))["states"][0]
    assert json.loads(state)["digest"].startswith("hmac-sha256:")
    ok_json(call(*platform, {"image": clip[1][1], "states": [state]}))
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "other-secret")
    response = call(*platform, {"image": clip[1][1], "states": [state]})
    assert response.status_code == 400 and "digest" in json.loads(response.body)["error"]


def test_handler_before_init_answers_503():
    from types import SimpleNamespace

    from autotrack.cvat.nuclio import tracker as lambda_tracker

    status, body = lambda_tracker.handle(SimpleNamespace(user_data=SimpleNamespace()),
                                         SimpleNamespace(body={}))
    assert status == 503 and "not initialised" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "config", sorted((REPO_ROOT / "serverless").glob("*track/nuclio/function*.yaml")),
    ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_tracker_function_yaml_carries_what_cvat_and_nuctl_read(config):
    import yaml

    function = config.parents[1].name
    document = yaml.safe_load(config.read_text())
    annotations = document["metadata"]["annotations"]
    assert annotations["type"] == "tracker" and annotations["spec"] == ""
    assert document["metadata"]["namespace"] == "cvat"
    spec = document["spec"]
    assert spec["handler"] == "main:handler" and spec["runtime"].startswith("python:3")
    assert "def handler(" in (config.parent / "main.py").read_text()
    trigger = spec["triggers"]["myHttpTrigger"]
    assert trigger["numWorkers"] == 1 and trigger["attributes"]["maxRequestBodySize"] > 0
    directives = " ".join(d["value"] for d in spec["build"]["directives"]["postCopy"])
    # OSTrack's weights are not redistributable: the admin mounts or bakes them.
    models = {"vittrack": ["vittrack"], "nanotrack": ["nanotrack-backbone", "nanotrack-head"],
              "ostrack": [], "bytetrack": ["yolox-nano"]}
    for model in models[function]:
        assert model in directives  # baked into the image at build time, sha256-checked
    if function == "ostrack":
        assert "AUTOTRACK_OSTRACK_CHECKPOINT" in {e["name"] for e in spec["env"]}
