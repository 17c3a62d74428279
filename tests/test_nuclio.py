"""The Nuclio functions in serverless/, driven through nuclio-sdk's own test platform.

Each function's main.py is imported from its folder and called with ``nuclio_sdk.Event``s, as
the Nuclio processor would (init_context once per platform). YOLOX runs the real weights on a
real vtest.avi frame; ultralytics runs configs with random weights, their class biases raised
so that they produce boxes and masks to check the response format on. Malformed requests must
all come back as 4xx with a JSON error, never as an exception.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import nuclio_sdk
import nuclio_sdk.test
import numpy as np
import pytest

from autotrack.coco import COCO_CLASSES
from autotrack.cvat.nuclio import detector as lambda_detector
from autotrack.cvat.nuclio.detector import (
    DetectorFunction,
    FunctionSettings,
    cvat_function_mask,
    detections_to_cvat,
    left_out_note,
)
from autotrack.cvat.nuclio.request import (
    MAX_BODY_BYTES,
    RequestError,
    RequestLimits,
    decode_base64_image,
    parse_detector_request,
    read_image_header,
)
from autotrack.detections import Detections
from autotrack.errors import AutotrackError
from autotrack.masks import decode_cvat_mask, encode_cvat_mask
from conftest import MODELS_DIR, REPO_ROOT
from cvat_lambda import (
    NUCLIO_DEFAULT_TIMEOUT_S,
    CvatLambdaError,
    convert,
    decode_stored_mask,
    parse_anno,
    read_reply,
    ui_detector_states,
    ui_mask2rle,
)
from helpers import load_main

SERVERLESS = REPO_ROOT / "serverless"
FRAME_INDEX = 50
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(frame: np.ndarray, suffix: str = ".jpg") -> bytes:
    ok, buffer = cv2.imencode(suffix, frame)
    assert ok
    return buffer.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """JPEG markers up to a baseline frame header claiming width x height pixels."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def call(platform: nuclio_sdk.test.Platform, handler, body, **event_fields):
    return platform.call_handler(handler, nuclio_sdk.Event(body=body, **event_fields))


def shapes_of(response) -> list[dict]:
    assert response.status_code == 200, response.body
    assert response.content_type == "application/json"
    shapes = json.loads(response.body)
    assert isinstance(shapes, list)
    return shapes


def boost_class(index: int, levels: slice = slice(2, None)):
    """A context mutation making an ultralytics head with random weights sure of one class,
    on its coarsest level only, so it answers with a few dozen shapes. A segmentation head
    also gets a constant positive prototype, so every mask fills its box (ultralytics drops
    detections whose mask is empty, which random prototypes often are)."""
    def mutate(context):
        head = context.user_data.autotrack.detector._model.model.model[-1]
        for branch in head.cv3[levels]:
            bias = branch[-1].bias.data
            bias[:] = -20.0
            bias[index] = 4.0
        if hasattr(head, "proto"):
            for branch in head.cv4:  # mask coefficients: (1, 0, 0, ...) everywhere
                branch[-1].weight.data.zero_()
                branch[-1].bias.data.zero_()
                branch[-1].bias.data[0] = 1.0
            last = head.proto.cv3  # prototype 0 is SiLU(1) everywhere, the others 0
            last.conv.weight.data.zero_()
            last.bn.bias.data.zero_()
            last.bn.bias.data[0] = 1.0
        return context
    return mutate


@pytest.fixture(scope="module")
def frame50(vtest_video: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(vtest_video))
    try:
        for _ in range(FRAME_INDEX + 1):  # read in order: AVI seeking may miss the frame
            ok, frame = capture.read()
            assert ok
    finally:
        capture.release()
    return frame


@pytest.fixture(scope="module")
def small_png(frame50: np.ndarray) -> str:
    return b64(encode(cv2.resize(frame50, (160, 120)), ".png"))


def _platform(env: dict[str, str], function: str, mutate=None):
    """A test platform whose function has run init_context under `env` (and `mutate`)."""
    module = load_main(function)
    platform = nuclio_sdk.test.Platform()
    with pytest.MonkeyPatch.context() as patch:
        for key in ("AUTOTRACK_DEVICE", "AUTOTRACK_YOLOX_MODEL", "AUTOTRACK_ULTRALYTICS_MODEL",
                    "AUTOTRACK_DEFAULT_THRESHOLD", "AUTOTRACK_MIN_SCORE"):
            patch.delenv(key, raising=False)
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        for key, value in env.items():
            patch.setenv(key, value)
        import torch

        torch.manual_seed(0)  # ultralytics configs start from random weights
        event = nuclio_sdk.Event(body={})  # refused, but runs init_context first
        if mutate is None:
            response = platform.call_handler(module.handler, event)
        else:
            response = platform.call_handler_with_context_mutation(module.handler, event, mutate)
    assert response.status_code == 400
    return platform, module.handler


@pytest.fixture(scope="module")
def yolox():
    return _platform({}, "yolox")


@pytest.fixture(scope="module")
def ultralytics_boxes():
    return _platform({"AUTOTRACK_ULTRALYTICS_MODEL": "yolo11n.yaml"}, "ultralytics",
                     boost_class(COCO_CLASSES.index("person")))


@pytest.fixture(scope="module")
def ultralytics_masks():
    return _platform({"AUTOTRACK_ULTRALYTICS_MODEL": "yolo11n-seg.yaml"}, "ultralytics",
                     boost_class(COCO_CLASSES.index("person")))


# --- YOLOX on real weights -------------------------------------------------------------------


def test_yolox_finds_people_in_vtest_frame_50(yolox, frame50):
    platform, handler = yolox
    shapes = shapes_of(call(platform, handler, {"image": b64(encode(frame50))}))
    people = [s for s in shapes if s["label"] == "person"]
    assert len(people) >= 3
    height, width = frame50.shape[:2]
    for shape in shapes:
        assert set(shape) == {"confidence", "label", "points", "type"}
        assert shape["type"] == "rectangle" and shape["label"] in COCO_CLASSES
        assert isinstance(shape["confidence"], str)
        assert 0.5 <= float(shape["confidence"]) <= 1.0  # CVAT's default threshold
        x1, y1, x2, y2 = shape["points"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    scores = [float(s["confidence"]) for s in shapes]
    assert scores == sorted(scores, reverse=True)


def test_yolox_threshold_from_the_request(yolox, frame50):
    platform, handler = yolox
    image = b64(encode(frame50))
    counts = {}
    for threshold in (0.2, 0.5, 0.8):
        shapes = shapes_of(call(platform, handler, {"image": image, "threshold": threshold}))
        assert all(float(s["confidence"]) >= threshold for s in shapes)
        counts[threshold] = len(shapes)
    assert counts[0.2] >= counts[0.5] >= counts[0.8]
    assert counts[0.2] > counts[0.8]


def test_yolox_accepts_png_raw_json_bytes_and_extra_cvat_fields(yolox, frame50):
    platform, handler = yolox
    body = {"image": b64(encode(frame50, ".png")), "threshold": 0.5,
            "mapping": {"person": {"name": "person"}}, "cleanup": False, "frame": 50}
    raw = json.dumps(body).encode()
    shapes = shapes_of(call(platform, handler, raw, content_type="application/json"))
    assert sum(s["label"] == "person" for s in shapes) >= 3


def test_yolox_line_wrapped_base64_and_bmp(yolox, frame50):
    platform, handler = yolox
    wrapped = base64.encodebytes(encode(frame50, ".bmp")).decode()  # 76 characters a line
    shapes = shapes_of(call(platform, handler, {"image": wrapped}))
    assert sum(s["label"] == "person" for s in shapes) >= 3


# --- ultralytics on random weights -----------------------------------------------------------


def test_ultralytics_boxes(ultralytics_boxes, small_png):
    platform, handler = ultralytics_boxes
    shapes = shapes_of(call(platform, handler, {"image": small_png, "threshold": 0.5}))
    assert shapes
    for shape in shapes:
        assert shape["type"] == "rectangle" and shape["label"] == "person"
        x1, y1, x2, y2 = shape["points"]
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
    # conv_mask_to_poly means nothing to a box model
    again = shapes_of(call(platform, handler, {"image": small_png, "conv_mask_to_poly": True}))
    assert {s["type"] for s in again} == {"rectangle"}


def _coco_rle(runs, length: int):
    """pycocotools' (compressed) RLE of a column of ``length`` pixels whose runs are ``runs``,
    background first: equal for two run lists exactly when the runs are equal."""
    from pycocotools import mask as mask_utils

    return mask_utils.frPyObjects([{"counts": runs, "size": [length, 1]}], length, 1)[0]


def test_ultralytics_masks_as_cvat_reads_them(ultralytics_masks, small_png):
    from pycocotools import mask as mask_utils

    platform, handler = ultralytics_masks
    shapes = shapes_of(call(platform, handler, {"image": small_png}))
    masks = [s for s in shapes if s["type"] == "mask"]
    assert masks and all(s["label"] == "person" for s in shapes)
    for shape in masks:
        *bits, x1, y1, x2, y2 = shape["mask"]
        assert 0 <= x1 <= x2 < 160 and 0 <= y1 <= y2 < 120
        assert len(bits) == (x2 - x1 + 1) * (y2 - y1 + 1) and set(bits) <= {0, 1}
        assert any(bits)
        # CVAT's lambda manager run-length encodes the flat bits itself (lambda_manager/views.py,
        # LambdaJob._call_detector: mask_tools.mask_to_rle, background first), appends the box;
        # that must equal our RLE of the same bitmap, which cvat-sdk reads back
        # (tests/test_masks.py). pycocotools encodes the bits as one column, independently.
        mask = np.zeros((120, 160), dtype=bool)
        mask[y1:y2 + 1, x1:x2 + 1] = np.asarray(bits, dtype=bool).reshape(y2 - y1 + 1, -1)
        *ours, ox1, oy1, ox2, oy2 = encode_cvat_mask(mask)
        assert [ox1, oy1, ox2, oy2] == [x1, y1, x2, y2]
        column = np.asfortranarray(np.asarray(bits, dtype=np.uint8).reshape(-1, 1))
        assert sum(ours) == len(bits)
        assert _coco_rle(ours, len(bits)) == mask_utils.encode(column)
        if "points" in shape:  # the outline CVAT uses for "convert masks to polygons"
            points = shape["points"]
            assert len(points) >= 6 and len(points) % 2 == 0
            assert all(0 <= x < 160 for x in points[::2])
            assert all(0 <= y < 120 for y in points[1::2])
    assert any("points" in s for s in masks)


def test_ultralytics_polygons_when_asked(ultralytics_masks, small_png):
    platform, handler = ultralytics_masks
    shapes = shapes_of(call(platform, handler, {"image": small_png, "conv_mask_to_poly": True}))
    polygons = [s for s in shapes if s["type"] == "polygon"]
    assert polygons
    assert {s["type"] for s in shapes} <= {"polygon", "mask", "rectangle"}
    for shape in polygons:
        assert "mask" not in shape
        assert len(shape["points"]) >= 6 and len(shape["points"]) % 2 == 0



def test_ultralytics_masks_through_cvats_converter(ultralytics_masks, small_png):
    """The answer as CVAT's lambda manager gets it (gzip accepted, as ``requests`` asks) and
    stores it (tests/cvat_lambda.py): every mask decodes to the bits the function sent."""
    platform, handler = ultralytics_masks
    response = call(platform, handler, {"image": small_png},
                    headers={"Accept-Encoding": "gzip, deflate"})
    assert response.status_code == 200
    shapes = read_reply(response.body, response.headers)
    masks = [s for s in shapes if s["type"] == "mask"]
    assert masks
    stored = convert(shapes, {"person": 7})
    assert len(stored) == len(shapes) and {s["label_id"] for s in stored} == {7}
    assert all("confidence" not in s and "score" not in s for s in stored)  # CVAT drops it
    ui = ui_detector_states(shapes)
    for shape, kept, shown in zip(shapes, stored, ui):
        if shape["type"] != "mask":
            continue
        *bits, x1, y1, x2, y2 = shape["mask"]
        sent = np.zeros((120, 160), dtype=bool)
        sent[y1:y2 + 1, x1:x2 + 1] = np.asarray(bits, dtype=bool).reshape(y2 - y1 + 1, -1)
        assert np.array_equal(decode_stored_mask(kept["points"], 120, 160), sent)
        assert shown["points"] == kept["points"]  # the UI's mask2Rle: the same runs
    as_polygons = convert(shapes, {"person": 7}, conv_mask_to_poly=True)
    assert all(s["type"] == "polygon" for s, a in zip(as_polygons, shapes) if "points" in a)


def _cvat_mask_anno(mask: np.ndarray, label: str = "cat", **extra) -> dict:
    return {"confidence": "0.9000", "label": label, "type": "mask",
            "mask": cvat_function_mask(mask), **extra}


def test_cvat_lambda_model_reads_cropped_masks_and_refuses_others():
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:7, 10:12] = True
    mask[6, 14] = True  # box x 10..14, y 3..6: 5x4
    anno = _cvat_mask_anno(mask, points=[10.0, 3.0, 14.0, 3.0, 14.0, 6.0])
    assert anno["mask"][-4:] == [10, 3, 14, 6] and len(anno["mask"]) == 5 * 4 + 4
    shape = parse_anno(anno, {"cat": 3}, frame=5)
    assert shape["type"] == "mask" and shape["label_id"] == 3 and shape["frame"] == 5
    assert shape["points"] == encode_cvat_mask(mask)  # CVAT's runs are ours
    assert "confidence" not in shape  # never read: CVAT stores no score (its UI shows 1)
    assert np.array_equal(decode_stored_mask(shape["points"], 20, 30), mask)
    assert parse_anno(anno, {"cat": 3}, conv_mask_to_poly=True)["type"] == "polygon"
    bare = {k: v for k, v in anno.items() if k != "points"}
    no_outline = parse_anno(bare, {"cat": 3}, conv_mask_to_poly=True)
    assert no_outline["type"] == "mask"  # no polygon offered: it stays a mask
    assert parse_anno(anno, {"dog": 0}) is None  # a label the task lacks is dropped
    assert ui_mask2rle([0, 0, 0, 1]) == [3, 1] and ui_mask2rle([1, 1, 0, 0]) == [0, 2, 2]
    assert ui_detector_states([anno])[0]["points"] == shape["points"]
    assert ui_detector_states([{**anno, "mask": []}]) == []  # the UI drops a mask without one
    full_frame = {**anno, "mask": mask.astype(np.uint8).ravel().tolist() + [10, 3, 14, 6]}
    booleans = {**anno, "mask": [bool(v) for v in anno["mask"][:-4]] + anno["mask"][-4:]}
    for bad, words in [(full_frame, "full-frame"), (booleans, "not ints"),
                       ({**anno, "mask": [10, 3, 14, 6]}, "no pixels"),
                       ({**anno, "mask": [2] * 20 + [10, 3, 14, 6]}, "0 or 1"),
                       ({**anno, "mask": [1] * 20 + [14, 3, 10, 6]}, "not [xtl")]:
        with pytest.raises(CvatLambdaError, match=re.escape(words)):
            parse_anno(bad, {"cat": 3})
    with pytest.raises(ValueError, match="not inside"):  # a box past the frame
        decode_stored_mask(parse_anno(anno, {"cat": 3})["points"], 5, 30)


def test_detector_masks_through_the_cvat_model():
    masks = np.zeros((2, 40, 50), dtype=bool)
    masks[0, 5:30, 7:20] = True
    masks[0, 10:12, 9:11] = False  # a hole
    masks[1, 39, 49] = True  # one corner pixel
    detections = Detections(np.array([[7, 5, 20, 30], [49, 39, 50, 40]]), np.array([0.8, 0.4]),
                            np.array([0, 1]), masks)
    shapes = detections_to_cvat(detections, ("cat", "dog"), threshold=0.1)
    stored = convert(shapes, {"cat": 0, "dog": 1})
    assert [s["type"] for s in stored] == ["mask", "mask"]
    for shape, mask in zip(stored, masks):
        assert np.array_equal(decode_stored_mask(shape["points"], 40, 50), mask)


def _seconds(duration: str) -> float:
    """A Go duration as Nuclio reads eventTimeout ("30s", "2m", "1m30s", "500ms")."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def test_no_function_waits_longer_than_cvat_does():
    """CVAT gives up on a call after CVAT_NUCLIO_DEFAULT_TIMEOUT (120 s unless its admin
    raises it; tests/cvat_lambda.py): an eventTimeout beyond it only keeps a worker busy on
    an answer nobody reads."""
    import yaml

    paths = sorted(SERVERLESS.glob("*/nuclio/function*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        timeout = yaml.safe_load(path.read_text())["spec"]["eventTimeout"]
        assert 0 < _seconds(timeout) <= NUCLIO_DEFAULT_TIMEOUT_S, \
            f"{path.relative_to(REPO_ROOT)}: eventTimeout {timeout}"
    assert _seconds("1m30s") == 90 and _seconds("120s") == 120


def test_large_answers_are_gzipped_for_callers_that_accept_it(ultralytics_masks, small_png):
    platform, handler = ultralytics_masks
    plain = call(platform, handler, {"image": small_png})
    assert "Content-Encoding" not in (plain.headers or {})
    zipped = call(platform, handler, {"image": small_png},
                  headers={"Accept-Encoding": "gzip, deflate"})
    body = plain.body.encode() if isinstance(plain.body, str) else plain.body
    assert len(body) >= 16 * 1024  # a few dozen masks: over the size worth compressing
    assert zipped.headers["Content-Encoding"] == "gzip" and len(zipped.body) < len(body) / 4
    assert gzip.decompress(zipped.body) == body
    assert read_reply(zipped.body, zipped.headers) == json.loads(body)
    tiny = call(platform, handler, {"image": small_png, "threshold": 1.0},
                headers={"Accept-Encoding": "gzip"})
    assert tiny.body == "[]" and "Content-Encoding" not in (tiny.headers or {})


# --- malformed requests: every one a 4xx with a JSON error, for every function ----------------

_GOOD_JPEG_B64 = b64(encode(np.full((32, 48, 3), 127, dtype=np.uint8)))
_JPEG_BYTES = base64.b64decode(_GOOD_JPEG_B64)
_PNG_BYTES = encode(np.full((32, 48, 3), 127, dtype=np.uint8), ".png")
_LIMITS = RequestLimits()

MALFORMED = [
    # (id, body, statuses allowed, words the error must contain)
    ("bad-base64", {"image": "not base64!!"}, {400}, "base64"),
    ("truncated-base64", {"image": _GOOD_JPEG_B64[:-1]}, {400}, "base64"),
    ("non-ascii-base64", {"image": "ÿÿÿÿ"}, {400}, "base64"),
    ("truncated-jpeg-header", {"image": b64(_JPEG_BYTES[:40])}, {400}, "truncated"),
    ("truncated-png", {"image": b64(_PNG_BYTES[:60])}, {400}, "decoded"),
    ("not-an-image", {"image": b64(b"hello, this is text and not an image")}, {400},
     "not a supported image"),
    ("zero-byte-image", {"image": ""}, {400}, "empty"),
    ("whitespace-image", {"image": "  \n "}, {400}, "empty"),
    ("png-claims-100000x100000", {"image": b64(png_claiming(100_000, 100_000))}, {413},
     "pixels"),
    ("jpeg-claims-65000x65000", {"image": b64(jpeg_claiming(65_000, 65_000))}, {413}, "pixels"),
    ("png-claims-0x0", {"image": b64(png_claiming(0, 10))}, {400}, "empty"),
    ("png-corrupt-ihdr", {"image": b64(PNG_SIGNATURE + b"\0\0\0\rXXXX" + bytes(17))}, {400},
     "IHDR"),
    ("jpeg-scan-before-frame", {"image": b64(b"\xff\xd8\xff\xda\x00\x02")}, {400}, "frame"),
    ("image-over-byte-limit", {"image": "A" * (_LIMITS.max_base64_chars + 4)}, {413}, "limit"),
    ("body-not-json", b"this is not json", {400}, "JSON"),
    ("body-truncated-json", b'{"image": "abc', {400}, "JSON"),
    ("body-not-utf8", b'\xff\xfe{"image": 1}', {400}, "UTF-8"),
    ("body-empty-bytes", b"", {400}, "empty"),
    ("body-none", None, {400}, "empty"),
    ("body-over-limit", b" " * (MAX_BODY_BYTES + 1), {413}, "limit"),
    ("body-deeply-nested", b"[" * 200_000, {400}, "JSON"),
    ("body-a-list", [{"image": _GOOD_JPEG_B64}], {400}, "object"),
    ("body-a-json-string", b'"just a string"', {400}, "object"),
    ("body-a-number", 42, {400}, "object"),
    ("missing-image", {"threshold": 0.5}, {400}, "missing"),
    ("image-null", {"image": None}, {400}, "missing"),
    ("image-a-number", {"image": 123}, {400}, "string"),
    ("image-a-list", {"image": [_GOOD_JPEG_B64]}, {400}, "string"),
    ("image-nested-object", {"image": {"data": _GOOD_JPEG_B64}}, {400}, "string"),
    ("threshold-high", {"image": _GOOD_JPEG_B64, "threshold": "high"}, {400}, "threshold"),
    ("threshold-numeric-string", {"image": _GOOD_JPEG_B64, "threshold": "0.5"}, {400},
     "threshold"),
    ("threshold-1.5", {"image": _GOOD_JPEG_B64, "threshold": 1.5}, {400}, "between 0 and 1"),
    ("threshold-minus-0.1", {"image": _GOOD_JPEG_B64, "threshold": -0.1}, {400},
     "between 0 and 1"),
    ("threshold-nan", {"image": _GOOD_JPEG_B64, "threshold": math.nan}, {400}, "finite"),
    ("threshold-nan-in-json", b'{"image": "%s", "threshold": NaN}' % _GOOD_JPEG_B64.encode(),
     {400}, "finite"),
    ("threshold-infinity", {"image": _GOOD_JPEG_B64, "threshold": math.inf}, {400}, "finite"),
    ("threshold-true", {"image": _GOOD_JPEG_B64, "threshold": True}, {400}, "boolean"),
    ("threshold-huge-int", {"image": _GOOD_JPEG_B64, "threshold": 10**400}, {400}, "between"),
    ("threshold-nested", {"image": _GOOD_JPEG_B64, "threshold": {"value": 0.5}}, {400},
     "threshold"),
    ("threshold-a-list", {"image": _GOOD_JPEG_B64, "threshold": [0.5]}, {400}, "threshold"),
    ("conv-mask-to-poly-string", {"image": _GOOD_JPEG_B64, "conv_mask_to_poly": "yes"}, {400},
     "conv_mask_to_poly"),
]


@pytest.mark.parametrize("function", ["yolox", "ultralytics_boxes"])
@pytest.mark.parametrize(("body", "statuses", "words"),
                         [pytest.param(b, s, w, id=i) for i, b, s, w in MALFORMED])
def test_malformed_requests_get_a_clear_4xx(request, function, body, statuses, words):
    platform, handler = request.getfixturevalue(function)
    response = call(platform, handler, body)
    assert response.status_code in statuses, response.body
    assert response.content_type == "application/json"
    error = json.loads(response.body)
    assert isinstance(error, dict) and error["status"] == response.status_code
    assert words.lower() in error["error"].lower(), error["error"]


def test_a_valid_tiny_request_still_works_after_the_malformed_ones(yolox):
    platform, handler = yolox
    assert shapes_of(call(platform, handler, {"image": _GOOD_JPEG_B64})) == []


# --- the handler core ---------------------------------------------------------------------------


class _Logger:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda message, *args: self.lines.append((level, message))


def _context():
    return SimpleNamespace(logger=_Logger(), user_data=SimpleNamespace(),
                           Response=nuclio_sdk.Response)


class _FakeDetector:
    class_names = ("cat", "dog")

    def __init__(self, detections=None, error=None):
        self.detections, self.error = detections, error

    def detect(self, frame):
        if self.error is not None:
            raise self.error
        return self.detections


def test_model_load_failure_is_one_clear_log_line_then_raises():
    context = _context()

    def factory():
        raise AutotrackError("model 'yolox-nano' is not in /nowhere; set AUTOTRACK_MODELS")

    with pytest.raises(AutotrackError):
        lambda_detector.init_context(context, factory, settings=FunctionSettings())
    errors = [m for level, m in context.logger.lines if level == "error"]
    assert len(errors) == 1 and "cannot load the detector" in errors[0]
    assert "AUTOTRACK_MODELS" in errors[0] and "\n" not in errors[0]


def test_main_py_with_a_missing_model_fails_at_init(monkeypatch):
    module = load_main("yolox")
    monkeypatch.setenv("AUTOTRACK_YOLOX_MODEL", "/nonexistent/model.onnx")
    with pytest.raises(AutotrackError, match="model.onnx"):
        nuclio_sdk.test.Platform().call_handler(module.handler, nuclio_sdk.Event(body={}))


def test_bad_settings_in_the_environment_fail_at_init(monkeypatch):
    monkeypatch.setenv("AUTOTRACK_DEFAULT_THRESHOLD", "high")
    context = _context()
    with pytest.raises(ValueError, match="AUTOTRACK_DEFAULT_THRESHOLD"):
        lambda_detector.init_context(context, _FakeDetector)
    assert any("AUTOTRACK_DEFAULT_THRESHOLD" in m for level, m in context.logger.lines
               if level == "error")


def test_handler_before_init_answers_503():
    context = _context()
    response = lambda_detector.handle(context, nuclio_sdk.Event(body={"image": _GOOD_JPEG_B64}))
    assert response.status_code == 503 and "init_context" in json.loads(response.body)["error"]


def test_model_crash_answers_500_and_logs_the_traceback():
    context = _context()
    detector = _FakeDetector(error=RuntimeError("CUDA out of memory"))
    lambda_detector.init_context(context, lambda: detector, settings=FunctionSettings())
    response = lambda_detector.handle(context, nuclio_sdk.Event(body={"image": _GOOD_JPEG_B64}))
    assert response.status_code == 500
    assert "CUDA out of memory" in json.loads(response.body)["error"]
    assert any(level == "error" and "Traceback" in m for level, m in context.logger.lines)


def test_spec_that_does_not_match_the_model_is_a_warning_at_init():
    context = _context()
    yaml_path = SERVERLESS / "yolox" / "nuclio" / "function.yaml"
    lambda_detector.init_context(context, _FakeDetector, settings=FunctionSettings(),
                                 function_yaml=yaml_path)
    warnings = [m for level, m in context.logger.lines if level == "warn"]
    assert len(warnings) == 1 and "80 labels" in warnings[0] and "label_spec" in warnings[0]


def test_repeated_class_names_are_refused_at_init():
    class Twins(_FakeDetector):
        class_names = ("cat", "cat")

    with pytest.raises(ValueError, match="unique"):
        lambda_detector.init_context(_context(), Twins, settings=FunctionSettings())


def test_detections_to_cvat_boxes_masks_and_polygons():
    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, 2:12, 5:15] = True  # a 10x10 square
    masks[1, 4, 4] = True  # one pixel: no polygon
    detections = Detections(
        np.array([[5, 2, 15, 12], [4, 4, 5, 5], [0, 0, 8, 8.5]]),
        np.array([0.9, 0.6, 0.3]), np.array([1, 0, 7]), masks,
    )
    shapes = detections_to_cvat(detections, ("cat", "dog"), threshold=0.25)
    assert [s["label"] for s in shapes] == ["dog", "cat", "7"]  # unknown ids keep their number
    square, dot, empty = shapes
    assert square["type"] == "mask" and square["confidence"] == "0.9000"
    assert square["mask"][-4:] == [5, 2, 14, 11] and len(square["mask"]) == 104
    assert np.array_equal(decode_cvat_mask(encode_cvat_mask(masks[0]), 20, 30), masks[0])
    assert square["mask"] == cvat_function_mask(masks[0])
    assert len(square["points"]) >= 8
    assert dot == {"confidence": "0.6000", "label": "cat", "mask": [1, 4, 4, 4, 4],
                   "type": "mask"}  # too small for a polygon: stays a mask, as CVAT does
    assert empty == {"confidence": "0.3000", "label": "7", "points": [0.0, 0.0, 8.0, 8.5],
                     "type": "rectangle"}  # an empty mask: the box stands for it
    as_polygons = detections_to_cvat(detections, ("cat", "dog"), threshold=0.5,
                                     conv_mask_to_poly=True)
    assert [s["type"] for s in as_polygons] == ["polygon", "mask"]
    assert as_polygons[0]["points"] == square["points"] and "mask" not in as_polygons[0]


def test_masks_are_answered_best_first_within_the_pixel_budget():
    """A mask costs two bytes of JSON per pixel of its box: past the budget the lower-scored
    masks are left out (and counted for the log), boxes never."""
    masks = np.zeros((3, 20, 30), dtype=bool)
    masks[0, 0:10, 0:10] = True  # 100 px
    masks[1, 0:20, 0:30] = True  # 600 px
    masks[2, 5:10, 5:10] = True  # 25 px
    detections = Detections(np.array([[0, 0, 10, 10], [0, 0, 30, 20], [5, 5, 10, 10]]),
                            np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), masks)
    shapes = detections_to_cvat(detections, ("cat", "dog"), threshold=0.1, max_mask_pixels=200)
    assert [s["confidence"] for s in shapes] == ["0.9000", "0.7000"]
    assert shapes.left_out == 1 and "1 masks over" in left_out_note(shapes)
    everything = detections_to_cvat(detections, ("cat", "dog"), threshold=0.1)
    assert len(everything) == 3 and everything.left_out == 0 and left_out_note(everything) == ""
    boxes = Detections(detections.boxes, detections.scores, detections.class_ids)
    assert len(detections_to_cvat(boxes, ("cat", "dog"), threshold=0.1, max_mask_pixels=1)) == 3
    assert FunctionSettings.from_env({"AUTOTRACK_MAX_MASK_PIXELS": "5000"}).max_mask_pixels == 5000
    with pytest.raises(ValueError, match="AUTOTRACK_MAX_MASK_PIXELS"):
        FunctionSettings.from_env({"AUTOTRACK_MAX_MASK_PIXELS": "0"})


def test_detector_function_uses_the_default_threshold_when_none_is_sent():
    detections = Detections(np.array([[0, 0, 4, 4]] * 2), np.array([0.4, 0.7]), np.array([0, 1]))
    function = DetectorFunction(_FakeDetector(detections), FunctionSettings(default_threshold=0.5))
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    request = parse_detector_request({"image": b64(encode(frame, ".png"))})
    assert [s["label"] for s in function.run(request)] == ["dog"]
    request = parse_detector_request({"image": b64(encode(frame, ".png")), "threshold": 0.1})
    assert [s["label"] for s in function.run(request)] == ["dog", "cat"]


# --- request parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,kind", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"),
                                         (".webp", "webp")])
def test_image_header_size_matches_the_decoded_image(suffix, kind):
    frame = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    header = read_image_header(encode(frame, suffix))
    assert (header.format, header.width, header.height) == (kind, 53, 37)
    decoded, _ = decode_base64_image(b64(encode(frame, suffix)))
    assert decoded.shape == (37, 53, 3) and decoded.dtype == np.uint8


def test_lossless_webp_and_grayscale_png_decode_to_bgr():
    frame = np.random.default_rng(1).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    ok, lossless = cv2.imencode(".webp", frame, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok and read_image_header(lossless.tobytes()).format == "webp"
    decoded, header = decode_base64_image(b64(lossless.tobytes()))
    assert (header.width, header.height) == (11, 9) and np.array_equal(decoded, frame)
    gray, _ = decode_base64_image(b64(encode(frame[:, :, 0], ".png")))
    assert gray.shape == (9, 11, 3)


def test_request_fields_and_limits():
    image = b64(encode(np.zeros((4, 6, 3), dtype=np.uint8), ".png"))
    request = parse_detector_request(
        {"image": image, "threshold": 1, "conv_mask_to_poly": True, "quality": "original",
         "mapping": {}})
    assert request.threshold == 1.0 and request.conv_mask_to_poly is True
    assert request.ignored_fields == ("mapping", "quality") and request.image.shape == (4, 6, 3)
    assert parse_detector_request({"image": image, "threshold": None}).threshold is None
    tight = RequestLimits(max_image_pixels=23)
    with pytest.raises(RequestError) as refused:
        parse_detector_request({"image": image}, tight)
    assert refused.value.status == 413 and "24 pixels" in str(refused.value)
    env = {"AUTOTRACK_MAX_IMAGE_PIXELS": "100", "AUTOTRACK_MAX_IMAGE_BYTES": "2048"}
    assert RequestLimits.from_env(env) == RequestLimits(max_image_bytes=2048,
                                                        max_image_pixels=100)
    with pytest.raises(ValueError, match="AUTOTRACK_MAX_IMAGE_BYTES"):
        RequestLimits.from_env({"AUTOTRACK_MAX_IMAGE_BYTES": "-1"})
