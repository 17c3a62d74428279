"""Versioned, JSON-safe codec for tracker state that travels through CVAT and clients.

State comes back from outside (a browser, a cvat-sdk client, a Nuclio request), so it is
untrusted input: it is plain JSON (never pickle), arrays are typed base64 blobs whose dtype
comes from an allow-list and whose size must match their declared shape, the whole text is
size-limited before parsing, and a digest over the payload refuses edited state. With
``AUTOTRACK_STATE_KEY`` set the digest is an HMAC, so only holders of the key can forge it.
Without the key anyone can recompute the digest, so every number is also checked: each plain
number in a payload goes through :mod:`autotrack.numbers` (finite, an int of at most 64 bits,
a float within 1e15) before a tracker sees it, and :class:`PayloadReader` reads fields in their
own ranges. Semantic checks (shapes agreeing, IDs unique, ...) belong to each tracker's
``from_state``. No message quotes more than a few characters of the state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
from typing import Any

import numpy as np

from autotrack.errors import StateError
from autotrack.numbers import (
    MAX_INT_BITS,
    NumberError,
    is_number,
    parse_integer,
    parse_number,
    quote,
)

STATE_FORMAT = "autotrack-state"
MAX_STATE_BYTES = 16 * 1024 * 1024
_ARRAY_TAG = "__ndarray__"
_ALLOWED_DTYPES = {"<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "|u1", "|b1"}
_MAX_DEPTH = 16
_MAX_DIMENSIONS = 4
# the two digests :func:`_digest` writes; anything else (another length, non-ASCII) is refused
_DIGEST_RE = re.compile(r"(?:sha256|hmac-sha256):[0-9a-f]{64}", re.ASCII)


def _state_key() -> bytes | None:
    key = os.environ.get("AUTOTRACK_STATE_KEY")
    return key.encode() if key else None


def _digest(canonical_payload: bytes) -> str:
    key = _state_key()
    if key is not None:
        return "hmac-sha256:" + hmac.new(key, canonical_payload, hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(canonical_payload).hexdigest()


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("state nests too deeply")
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in _ALLOWED_DTYPES:
            raise ValueError(f"cannot store arrays of dtype {array.dtype}")
        return {
            _ARRAY_TAG: {
                "dtype": dtype.str,
                "shape": list(array.shape),
                "data": base64.b64encode(array.astype(dtype, copy=False).tobytes()).decode("ascii"),
            }
        }
    if isinstance(value, dict):
        return {str(k): _to_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, depth + 1) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("state holds a non-finite number")
        return value
    raise ValueError(f"cannot store a {type(value).__name__} in tracker state")


def _decode_array(spec: Any) -> np.ndarray:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data"}:
        raise StateError("state array must have exactly dtype, shape and data")
    dtype_str, shape, data = spec["dtype"], spec["shape"], spec["data"]
    if not isinstance(dtype_str, str) or dtype_str not in _ALLOWED_DTYPES:
        raise StateError(f"state array has a disallowed dtype {quote(dtype_str)}")
    shape_error = (f"state array shape must be a list of at most {_MAX_DIMENSIONS} "
                   "non-negative integers")
    if not isinstance(shape, list) or len(shape) > _MAX_DIMENSIONS:
        raise StateError(shape_error)
    try:
        shape = [parse_integer(d, "state array shape", low=0, high=2**62)
                 for d in shape]
    except NumberError:
        raise StateError(shape_error) from None
    if not isinstance(data, str):
        raise StateError("state array data must be a base64 string")
    dtype = np.dtype(dtype_str)
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_STATE_BYTES:
        raise StateError("state array is larger than the state size limit")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise StateError(f"state array data is not valid base64: {exc}") from None
    if len(raw) != expected:
        raise StateError(
            f"state array data has {len(raw)} bytes, its shape {shape} and dtype need {expected}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise StateError("state array holds NaN or infinite values")
    return array


def _from_json(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise StateError("state nests too deeply")
    if isinstance(value, dict):
        if _ARRAY_TAG in value:
            if len(value) != 1:
                raise StateError("state array object has extra keys")
            return _decode_array(value[_ARRAY_TAG])
        return {k: _from_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v, depth + 1) for v in value]
    if is_number(value):  # every plain number, whatever its field: finite and not absurd
        try:
            if isinstance(value, int):
                parse_integer(value, "a state number", low=-(2**MAX_INT_BITS),
                              high=2**MAX_INT_BITS)
            else:
                parse_number(value, "a state number")
        except NumberError as exc:
            raise StateError(f"tracker state holds a number out of range: {exc}") from None
    return value


def _canonical(payload_json: Any) -> bytes:
    return json.dumps(payload_json, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode_state(kind: str, version: int, payload: dict[str, Any]) -> str:
    """Serialise a tracker's payload (dicts, lists, scalars, numpy arrays) to a JSON string."""
    payload_json = _to_json(payload)
    envelope = {
        "format": STATE_FORMAT,
        "kind": kind,
        "version": version,
        "payload": payload_json,
        "digest": _digest(_canonical(payload_json)),
    }
    text = json.dumps(envelope, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_STATE_BYTES:
        raise StateError(f"tracker state is {len(text)} bytes, over the {MAX_STATE_BYTES}-byte limit")
    return text


def decode_state(
    text: str | bytes, kind: str, supported_versions: tuple[int, ...],
    max_bytes: int = MAX_STATE_BYTES,
) -> tuple[int, dict[str, Any]]:
    """Parse and check an envelope; returns (version, payload with arrays restored)."""
    if not isinstance(text, (str, bytes)):
        raise StateError(f"tracker state must be a JSON string, got {type(text).__name__}")
    if len(text) > max_bytes:
        raise StateError(f"tracker state is {len(text)} bytes, over the {max_bytes}-byte limit")
    try:
        envelope = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise StateError(f"tracker state is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(envelope, dict) or envelope.get("format") != STATE_FORMAT:
        raise StateError(f"tracker state is not an {STATE_FORMAT} document")
    if envelope.get("kind") != kind:
        raise StateError(f"tracker state is for {quote(envelope.get('kind'))}, not {kind!r}")
    version = envelope.get("version")
    if isinstance(version, bool) or version not in supported_versions:
        raise StateError(f"tracker state version {quote(version)} is not supported "
                         f"(supported: {list(supported_versions)})")
    payload_json = envelope.get("payload")
    digest = envelope.get("digest")
    if not isinstance(payload_json, dict) or not isinstance(digest, str):
        raise StateError("tracker state lacks its payload or digest")
    mismatch = "tracker state digest does not match its payload (edited or corrupted)"
    if not _DIGEST_RE.fullmatch(digest):  # e.g. non-ASCII, which compare_digest cannot take
        raise StateError(mismatch)
    try:
        expected = _digest(_canonical(payload_json))
    except (ValueError, TypeError, RecursionError):
        raise StateError("tracker state payload cannot be canonicalised") from None
    if not hmac.compare_digest(expected.encode("ascii"), digest.encode("ascii")):
        raise StateError(mismatch)
    return version, _from_json(payload_json)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class PayloadReader:
    """Typed access to a decoded payload: every missing or mistyped field is a StateError."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def array(self, key: str, kind: str, shape: tuple[int | None, ...]) -> np.ndarray:
        value = self._payload.get(key)
        if not isinstance(value, np.ndarray):
            raise StateError(f"tracker state field {key!r} must be an array")
        if value.dtype.kind not in kind:
            raise StateError(f"tracker state field {key!r} has dtype {value.dtype}")
        if value.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape)
        ):
            raise StateError(f"tracker state field {key!r} has shape {value.shape}, expected {shape}")
        return value

    def integer(self, key: str, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
        """An int field in ``[minimum, maximum]`` (a float, even 3.0, is refused)."""
        try:
            return parse_integer(self._payload.get(key), f"tracker state field {key!r}",
                                 low=minimum, high=maximum)
        except NumberError as exc:
            raise StateError(str(exc)) from None

    def number(self, key: str, low: float, high: float) -> float:
        """A number field in ``[low, high]``, as a float."""
        try:
            return parse_number(self._payload.get(key), f"tracker state field {key!r}",
                                low=low, high=high)
        except NumberError as exc:
            raise StateError(str(exc)) from None

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._payload.get(key)
        if not isinstance(value, dict):
            raise StateError(f"tracker state field {key!r} must be an object")
        return value


def decode_state_jpeg(data: bytes, max_side: int, what: str) -> np.ndarray:
    """A BGR image from a JPEG carried in a state, refused (StateError) unless its own header
    says it is at most ``max_side`` pixels a side: checked *before* decoding, so a forged
    header cannot make the decoder allocate gigabytes."""
    import cv2

    from autotrack.image_header import ImageHeaderError, read_image_header

    try:
        header = read_image_header(bytes(data), field=what)
    except ImageHeaderError as exc:
        raise StateError(str(exc)) from None
    if header.format != "jpeg" or max(header.width, header.height) > max_side:
        raise StateError(f"{what} must be a JPEG of at most {max_side}x{max_side} pixels, got "
                         f"{header.format.upper()} {header.width}x{header.height}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (header.height, header.width):
        raise StateError(f"{what} is a corrupt or truncated JPEG")
    return image
