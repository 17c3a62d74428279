"""Tracker states, edited: the envelope, the payload's fields and arrays, the JPEG inside,
re-signed with the keyless digest (as :mod:`autotrack.state` computes it when
``AUTOTRACK_STATE_KEY`` is unset) so that only the semantic checks can refuse them; and
states swapped between objects, sessions and tracker kinds.

:func:`foreign_states` builds valid states of every kind without running a model (SOT states
for vittrack, nanotrack and ostrack; mask states for sam2 and xmem; a ByteTrack state), so
each tracker can be handed another one's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
from typing import Any

import numpy as np

from fuzz import values
from fuzz.images import Frames, encode, jpeg_claiming, patch_size, png_claiming

ARRAY_TAG = "__ndarray__"
ALLOWED_DTYPES = ("<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "|u1", "|b1")


def parse(text: object) -> dict | None:
    if not isinstance(text, str):
        return None
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return envelope if isinstance(envelope, dict) else None


def digest(payload: Any) -> str:
    """The keyless digest :func:`autotrack.state.encode_state` writes (NaN allowed here, so
    that a payload holding one still gets a digest: the codec refuses it anyway)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def resign(envelope: dict) -> str:
    payload = envelope.get("payload")
    try:
        envelope["digest"] = digest(payload)
    except (TypeError, ValueError, RecursionError):
        pass
    return dumps(envelope)


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return '{"format":"autotrack-state"}'


def array_of(spec: dict) -> np.ndarray | None:
    try:
        inner = spec[ARRAY_TAG]
        raw = base64.b64decode(inner["data"])
        return np.frombuffer(raw, dtype=np.dtype(inner["dtype"])).reshape(inner["shape"]).copy()
    except Exception:
        return None


def array_spec(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {ARRAY_TAG: {"dtype": array.dtype.str, "shape": list(array.shape),
                        "data": base64.b64encode(array.tobytes()).decode("ascii")}}


def array_fields(payload: dict) -> list[str]:
    return [k for k, v in payload.items() if isinstance(v, dict) and ARRAY_TAG in v]


# --- the edits -----------------------------------------------------------------------------


def _edit_array_values(array: np.ndarray, rng: random.Random) -> np.ndarray:
    out = array.copy()
    flat = out.reshape(-1)
    if not flat.size:
        return np.asarray([rng.choice((0, 1, -1, 2**31 - 1))], dtype=array.dtype)
    kind = array.dtype.kind
    ops = ["one", "all", "swap", "shrink", "grow", "sort"]
    op = rng.choice(ops)
    if op == "shrink":
        return flat[: rng.randrange(flat.size)].copy()
    if op == "grow":
        return np.concatenate([flat, flat[: rng.randrange(1, flat.size + 1)]])
    if op == "sort":
        return np.sort(flat)[::-1].copy()
    if op == "swap" and flat.size >= 2:
        i, j = rng.randrange(flat.size), rng.randrange(flat.size)
        flat[i], flat[j] = flat[j], flat[i]
        return out
    if kind == "f":
        choices = (0.0, -1.0, 1e-9, 0.5, 1e6, 1e7, 1e15, 1e300, -1e300, np.nan, np.inf,
                   65535.0, 65536.0)
    elif kind == "b":
        choices = (True, False)
    else:
        info = np.iinfo(array.dtype)
        choices = tuple(v for v in (0, -1, 1, 2, 255, 65535, 65536, 2**31 - 1, -2**31,
                                    info.max, info.min) if info.min <= v <= info.max)
    value = rng.choice(choices)
    with np.errstate(all="ignore"):
        if op == "all":
            flat[:] = value
        else:
            flat[rng.randrange(flat.size)] = value
    return out


def _edit_spec(spec: dict, rng: random.Random) -> tuple[dict, str]:
    """One edit of an ``__ndarray__`` object's dtype, shape or data."""
    if not isinstance(spec, dict):  # an earlier edit replaced the array object
        return array_spec(np.zeros(3, np.int32)), "array object restored, then edited"
    inner = spec.get(ARRAY_TAG)
    inner = dict(inner) if isinstance(inner, dict) else {}
    op = rng.random()
    if op < 0.35:
        array = array_of(spec)
        if array is not None:
            return array_spec(_edit_array_values(array, rng)), "array values edited"
    if op < 0.5:
        inner["dtype"] = rng.choice(ALLOWED_DTYPES + ("<f16", ">f8", "O", "<U8", "|V8", 7, None))
        return {ARRAY_TAG: inner}, f"dtype -> {values.describe(inner['dtype'])}"
    if op < 0.7:
        shape = inner.get("shape")
        shape = list(shape) if isinstance(shape, list) else []
        choice = rng.choice(("dim", "add", "drop", "huge", "nasty"))
        if choice == "dim" and shape:
            i = rng.randrange(len(shape))
            shape[i] = values.tweak_number(shape[i], rng) if isinstance(shape[i], (int, float)) \
                else 0
        elif choice == "add":
            shape = shape + [1] * rng.choice((1, 3, 10))
        elif choice == "drop":
            shape = shape[:-1]
        elif choice == "huge":
            shape = [2**31, 2**31] if rng.random() < 0.5 else [10**30]
        else:
            shape = values.anything(rng)
        inner["shape"] = shape
        return {ARRAY_TAG: inner}, f"shape -> {values.describe(shape)}"
    if op < 0.9:
        data = inner.get("data")
        data = data if isinstance(data, str) else ""
        choice = rng.choice(("truncate", "extend", "bad", "pad", "empty", "nasty"))
        inner["data"] = {"truncate": data[: len(data) // 2],
                         "extend": data + "AAAA",
                         "bad": data[:4] + "!" + data[5:],
                         "pad": data.rstrip("=") + "===",
                         "empty": "",
                         "nasty": values.anything(rng)}[choice]
        return {ARRAY_TAG: inner}, f"data {choice}"
    extra = dict(spec)
    if rng.random() < 0.5:
        extra["x"] = 1
    else:
        inner["extra"] = 1
        extra[ARRAY_TAG] = inner
    return extra, "array object with an extra key"


def _jpeg_payload(frames: Frames, rng: random.Random) -> tuple[bytes, str]:
    frame = frames.frames[rng.randrange(len(frames))]
    choice = rng.random()
    if choice < 0.2:
        return encode(frame[: rng.choice((1, 2, 7)), : rng.choice((1, 3, 9))], "jpeg"), "tiny JPEG"
    if choice < 0.35:
        import cv2
        big = cv2.resize(frame, (rng.choice((257, 513, 1000)), rng.choice((100, 600))))
        return encode(big, "jpeg"), "JPEG over the stored size"
    if choice < 0.5:
        return encode(frame, "png"), "PNG instead of JPEG"
    if choice < 0.6:
        data = encode(frame, "jpeg")
        return data[: len(data) // 3], "truncated JPEG"
    if choice < 0.7:
        return jpeg_claiming(rng.choice((65535, 256, 1)), rng.choice((65535, 256, 1))), \
            "JPEG header only, claiming a size"
    if choice < 0.8:
        return patch_size(encode(frame, "jpeg"), rng.choice((256, 255, 1, 65535)),
                          rng.choice((256, 1, 65535))), "real JPEG claiming another size"
    if choice < 0.9:
        return png_claiming(100_000, 100_000), "PNG claiming 100000x100000"
    return encode(frame, "jpeg"), "another frame's JPEG"


def mutate_state(text: object, rng: random.Random, *, frames: Frames,
                 others: list[str], foreign: dict[str, list[str]]) -> tuple[object, str]:
    """Another value for one ``states[i]`` entry, and what was done. ``others`` are valid
    states of this kind (other objects, sessions, steps), ``foreign`` those of other kinds."""
    envelope = parse(text)
    roll = rng.random()
    if envelope is None or roll < 0.08:  # text-level damage
        text = text if isinstance(text, str) else json.dumps(text)
        ops = [
            (lambda: text[: rng.randrange(len(text) + 1)], "state text truncated"),
            (lambda: values.tweak_string(text, rng), "state text tweaked"),
            (lambda: json.loads(text) if parse(text) is not None else {}, "state as an object"),
            (lambda: json.dumps(text), "state JSON-encoded twice"),
            (lambda: text + " " * (16 * 1024 + 1 - len(text)) if len(text) < 16 * 1024 + 1
             else text, "state padded to just over 16 KiB"),
            (lambda: text + " " * (256 * 1024 + 1 - len(text)) if len(text) < 256 * 1024 + 1
             else text, "state padded to just over 256 KiB"),
            (lambda: values.anything(rng), "state replaced by a value"),
            (lambda: "[" * 100_000, "state nested 100000 deep"),
            (lambda: '{"format":"autotrack-state","payload":' + "[" * 5000 + "]" * 5000 + "}",
             "state payload nested 5000 deep"),
        ]
        make, what = rng.choice(ops)
        return make(), what
    if roll < 0.16 and others:
        return rng.choice(others), "another object's or step's state"
    if roll < 0.26:
        kinds = [k for k in foreign if foreign[k]]
        kind = rng.choice(kinds)
        return rng.choice(foreign[kind]), f"a {kind} state"
    if roll < 0.34:  # the envelope around the payload (the digest covers only the payload)
        field = rng.choice(("format", "kind", "version", "digest", "payload", "extra"))
        if field == "kind":
            new = rng.choice(("sot-vittrack", "sot-nanotrack", "sot-ostrack", "vos-sam2",
                              "vos-xmem", "bytetrack", "bytetrack-object", "", None, 1))
        elif field == "version":
            new = rng.choice((0, 2, True, 1.0, "1", None, 2**64))
        elif field == "digest":
            new = rng.choice(("", "sha256:" + "0" * 64, "hmac-sha256:" + "0" * 64, None, 0,
                              envelope.get("digest", "").upper()))
        else:
            new = values.anything(rng)
        if field == "extra":
            envelope["extra"] = new
        elif rng.random() < 0.2:
            envelope.pop(field, None)
            return dumps(envelope), f"envelope lacks {field}"
        else:
            envelope[field] = new
        return dumps(envelope), f"envelope {field} -> {values.describe(new)}"
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return dumps(envelope), "unchanged"
    signed = rng.random() < 0.85
    arrays = array_fields(payload)
    op = rng.random()
    if op < 0.3 and arrays:
        key = rng.choice(arrays)
        payload[key], how = _edit_spec(payload[key], rng)
        what = f"payload {key}: {how}"
    elif op < 0.42 and any(k in payload for k in ("template", "prompt_jpeg")):
        key = "template" if "template" in payload else "prompt_jpeg"
        data, how = _jpeg_payload(frames, rng)
        payload[key] = array_spec(np.frombuffer(data, np.uint8))
        what = f"payload {key}: {how}"
    elif op < 0.52 and "session" in payload:
        payload["session"] = rng.choice((secrets.token_urlsafe(24), "a" * 16, "a" * 15,
                                         "a" * 65, "../" * 6, "", None, 5))
        what = f"payload session -> {values.describe(payload['session'])}"
    elif op < 0.64 and payload:
        key = rng.choice([k for k in payload if k not in arrays] or list(payload))
        scale = {"step": 2**63, "object_id": 2**31, "score": 1.0}.get(key)
        payload[key], how = values.mutate_node(payload[key], rng, scale=scale)
        what = f"payload {key}: {how} -> {values.describe(payload[key])}"
    elif op < 0.74:
        if rng.random() < 0.5 and payload:
            key = rng.choice(list(payload))
            del payload[key]
            what = f"payload lacks {key}"
        else:
            payload[rng.choice(("extra", "__ndarray__", "tracks"))] = values.anything(rng)
            what = "payload with an extra field"
    else:
        payload, what = values.mutate_somewhere(payload, rng)
        what = f"payload {what}"
        envelope["payload"] = payload
    if signed:
        return resign(envelope), what + " (re-signed)"
    return dumps(envelope), what + " (not re-signed)"


# --- valid states of every kind ------------------------------------------------------------


def foreign_states(frames: Frames) -> dict[str, list[str]]:
    """Valid states of each tracker kind, built without a model."""
    from autotrack.sot.base import SotState
    from autotrack.vos.mask_state import MaskTrackState, ShapePrompt

    frame = frames.frames[0]
    height, width = frame.shape[:2]
    box = (width * 0.2, height * 0.2, width * 0.6, height * 0.7)
    template = encode(frame[: height // 2, : width // 2], "jpeg")
    out: dict[str, list[str]] = {}
    for kind in ("vittrack", "nanotrack", "ostrack"):
        out[f"sot-{kind}"] = [SotState(kind, box, 0.9, template, (4.0, 4.0, 40.0, 30.0),
                                       secrets.token_urlsafe(24), step).encode()
                              for step in (0, 3)]
    mask = np.zeros((height, width), bool)
    mask[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = True
    for kind in ("sam2", "xmem"):
        out[f"vos-{kind}"] = [
            MaskTrackState.start(kind, frame, ShapePrompt("rectangle", box=box), mask,
                                 session=secrets.token_urlsafe(24), object_id=1).encode(),
            MaskTrackState.start(kind, frame, ShapePrompt("mask", mask=mask), mask,
                                 session=secrets.token_urlsafe(24), object_id=2).encode()]
    from autotrack.detections import Detections
    from autotrack.trackers.bytetrack import ByteTrack

    tracker = ByteTrack()
    for step in range(3):
        tracker.update(Detections(np.array([[10.0 + step, 10, 50, 60], [80, 20, 120, 80]]),
                                  np.array([0.9, 0.8]), np.array([0, 0])))
    out["bytetrack"] = [tracker.to_state()]
    from autotrack.kalman import KalmanFilterXYAH
    from autotrack.trackers.given_objects import GivenObject

    kalman = KalmanFilterXYAH().initiate(np.array([[(box[0] + box[2]) / 2,
                                                    (box[1] + box[3]) / 2,
                                                    (box[2] - box[0]) / (box[3] - box[1]),
                                                    box[3] - box[1]]]))[0]
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(3, 256)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    out["bytetrack-object"] = [
        GivenObject(kalman, box, "person", 0.9, 0, 4).encode(),
        GivenObject(kalman, box, "", 0.0, 2, 7, gallery.astype(np.float16),
                    "person-reid-0248").encode()]
    return out
