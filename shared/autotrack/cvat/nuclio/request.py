"""CVAT detector requests to a Nuclio function: parsed, checked and decoded, or refused with a
reason.

CVAT's lambda manager POSTs ``{"image": <base64 JPEG/PNG>, "threshold": <number>}`` to a
``type: detector`` function; ``threshold`` comes only when the user set one. Anything else a
caller sends (a newer CVAT, a script) is ignored and reported in
:attr:`DetectorRequest.ignored_fields`, so no extra field can break a working setup. One field
beyond CVAT's is understood: ``conv_mask_to_poly`` (bool) asks a segmentation model for polygons
instead of masks; CVAT itself makes that conversion from the ``points`` every mask carries.

Every problem is a :class:`RequestError` with an HTTP status (400 malformed, 413 too large) and
one line saying what is wrong. Size limits hold before any costly work: the base64 text's
length before decoding, and the pixel count from the image's own header (PNG, JPEG, BMP, WebP)
before the pixels are decoded, so a small file claiming 100000x100000 pixels costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from autotrack.errors import InputError
from autotrack.image_header import ImageHeader, ImageHeaderError, read_image_header
from autotrack.numbers import NumberError, describe, parse_number

MAX_BODY_BYTES = 32 * 1024 * 1024  # the HTTP trigger's maxRequestBodySize in function.yaml
MAX_IMAGE_BYTES = 24 * 1024 * 1024  # decoded; its base64 (4/3 larger) fits in MAX_BODY_BYTES
MAX_IMAGE_PIXELS = 8192 * 8192  # 64 Mpx: a BGR copy is 192 MiB
# Mask functions answer a 0/1 per pixel of the frame (the interactor) or keep masks of every
# frame (the trackers): past 4K UHD their work grows with nothing gained (SAM2 sees 1024 px,
# XMem 480), and an 8192x8192 frame took 6-17 s and a 200 MB answer.
MASK_MAX_IMAGE_PIXELS = 3840 * 2160
DETECTOR_FIELDS = ("image", "threshold", "conv_mask_to_poly")

_ENV_LIMITS = {
    "max_body_bytes": "AUTOTRACK_MAX_BODY_BYTES",
    "max_image_bytes": "AUTOTRACK_MAX_IMAGE_BYTES",
    "max_image_pixels": "AUTOTRACK_MAX_IMAGE_PIXELS",
}


class RequestError(InputError):
    """A request the function will not run: ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.field = field

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": str(self), "status": self.status}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class RequestLimits:
    """What one request may weigh: raw body bytes, decoded image bytes, image pixels."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        for name in _ENV_LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def max_base64_chars(self) -> int:
        """Length of the base64 text of an image of exactly max_image_bytes."""
        return 4 * -(-self.max_image_bytes // 3)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 max_image_pixels: int | None = None) -> RequestLimits:
        """Defaults (``max_image_pixels``: this kind of function's own default, else
        :data:`MAX_IMAGE_PIXELS`), overridden by AUTOTRACK_MAX_BODY_BYTES / _IMAGE_BYTES /
        _IMAGE_PIXELS."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        if max_image_pixels is not None:
            values["max_image_pixels"] = int(max_image_pixels)
        for name, variable in _ENV_LIMITS.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"{variable} must be a positive integer, got {text!r}") from None
            if values[name] <= 0:
                raise ValueError(f"{variable} must be a positive integer, got {text!r}")
        return cls(**values)


@dataclass(frozen=True)
class DetectorRequest:
    """A checked detector request: the decoded frame and what the caller asked for."""

    image: np.ndarray  # HxWx3 uint8 BGR, as cv2 decodes it (EXIF orientation not applied)
    image_format: str
    threshold: float | None  # None: the function's default
    conv_mask_to_poly: bool = False
    ignored_fields: tuple[str, ...] = field(default=())


def parse_detector_request(
    body: object, limits: RequestLimits | None = None
) -> DetectorRequest:
    """The request in a Nuclio event body (a dict, or JSON bytes/str), or RequestError."""
    limits = limits or RequestLimits()
    payload = parse_json_object(body, limits)
    image, header = decode_base64_image(payload.get("image"), limits)
    return DetectorRequest(
        image=image,
        image_format=header.format,
        threshold=parse_threshold(payload.get("threshold")),
        conv_mask_to_poly=_optional_bool(payload.get("conv_mask_to_poly"), "conv_mask_to_poly"),
        ignored_fields=tuple(sorted(str(key) for key in payload if key not in DETECTOR_FIELDS)),
    )


def parse_json_object(body: object, limits: RequestLimits | None = None) -> dict[str, object]:
    """The body as a JSON object: Nuclio hands over a dict when it parsed JSON, else raw bytes."""
    limits = limits or RequestLimits()
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        size = len(body) if not isinstance(body, memoryview) else body.nbytes
        if size > limits.max_body_bytes:
            raise RequestError(
                f"request body is {size} bytes, over the limit of {limits.max_body_bytes}",
                status=413,
            )
        if isinstance(body, str):
            text = body
        else:
            try:
                text = bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(
                    "request body is not UTF-8 text; expected a JSON object"
                ) from None
        if not text.strip():
            raise RequestError("request body is empty; expected a JSON object with an 'image'")
        try:
            body = json.loads(text)
        except RecursionError:
            raise RequestError("request body is JSON nested too deeply") from None
        except ValueError as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from None
    if body is None:
        raise RequestError("request body is empty; expected a JSON object with an 'image'")
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {_json_kind(body)}")
    return body


def decode_base64_image(
    value: object, limits: RequestLimits | None = None, *, field: str = "image"
) -> tuple[np.ndarray, ImageHeader]:
    """A base64 JPEG/PNG/BMP/WebP string decoded to a BGR frame, within the limits."""
    limits = limits or RequestLimits()
    if value is None:
        raise RequestError(f"'{field}' is missing: send the frame as a base64 string", field=field)
    if not isinstance(value, str):
        raise RequestError(
            f"'{field}' must be a base64 string, got {_json_kind(value)}", field=field
        )
    # A gross check before copying: even whitespace-laden base64 is not twice the limit.
    if len(value) > 2 * limits.max_base64_chars:
        raise _image_too_large(len(value) * 3 // 4, limits, field)
    compact = "".join(value.split())  # tolerate line-wrapped (MIME) base64
    if not compact:
        raise RequestError(f"'{field}' is empty", field=field)
    if len(compact) > limits.max_base64_chars:
        raise _image_too_large(len(compact) * 3 // 4, limits, field)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"'{field}' is not valid base64: {exc}", field=field) from None
    if not data:
        raise RequestError(f"'{field}' is empty", field=field)
    if len(data) > limits.max_image_bytes:
        raise _image_too_large(len(data), limits, field)
    return decode_image(data, limits, field=field)


def decode_image(
    data: bytes, limits: RequestLimits | None = None, *, field: str = "image"
) -> tuple[np.ndarray, ImageHeader]:
    """Encoded image bytes to a BGR frame; the header's pixel count is checked first."""
    limits = limits or RequestLimits()
    try:
        header = read_image_header(data, field=field)
    except ImageHeaderError as exc:
        raise RequestError(str(exc), field=exc.field) from None
    if header.pixels > limits.max_image_pixels:
        raise RequestError(
            f"'{field}' is {header.width}x{header.height} = {header.pixels} pixels, over the "
            f"limit of {limits.max_image_pixels} (AUTOTRACK_MAX_IMAGE_PIXELS)",
            status=413, field=field,
        )
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # pixels as CVAT shows them
    try:
        frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise RequestError(
            f"'{field}' could not be decoded as {header.format.upper()}: {_one_line(exc)}",
            field=field,
        ) from None
    if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
        raise RequestError(
            f"'{field}' could not be decoded as {header.format.upper()} "
            f"({header.width}x{header.height}): the data is corrupt or truncated",
            field=field,
        )
    if frame.shape[0] * frame.shape[1] > limits.max_image_pixels:  # header and data disagree
        raise RequestError(f"'{field}' decodes to more pixels than allowed", status=413,
                           field=field)
    return frame, header


def parse_threshold(value: object, *, field: str = "threshold") -> float | None:
    """A confidence threshold in [0, 1] (:mod:`autotrack.numbers`); None when absent."""
    if value is None:
        return None
    try:
        return parse_number(value, f"'{field}'", low=0, high=1)
    except NumberError as exc:
        raise RequestError(str(exc), field=field) from None


def _optional_bool(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be true or false, got {_json_kind(value)}", field=name)
    return value


def _image_too_large(size: int, limits: RequestLimits, field: str) -> RequestError:
    return RequestError(
        f"'{field}' is about {size} bytes, over the limit of {limits.max_image_bytes} "
        "(AUTOTRACK_MAX_IMAGE_BYTES)",
        status=413, field=field,
    )


def _json_kind(value: object) -> str:
    """How a value looks to someone writing JSON: 'a string ("high")', 'an array', ..."""
    return describe(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
