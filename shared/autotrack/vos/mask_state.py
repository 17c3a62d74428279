"""In-band state of one mask-tracked shape, and CVAT shapes as mask prompts and results.

A mask tracker's live model (SAM2's or XMem's memory of past frames) stays in the worker that
ran it; what travels through CVAT to the browser and back is :class:`MaskTrackState`: enough
to start the object again on any worker, and to tell whether a live session is still the one
this state left.

- the frame the object was started on, downscaled to at most :data:`PROMPT_MAX_SIDE` pixels
  and JPEG-encoded, with the object's mask on it (CVAT's RLE at that size: the model's first
  mask, else the user's), and the object's box in frame pixels (the rectangle drawn, else the
  mask's box), used when the stored mask is empty;
- the last mask (CVAT's RLE at the same small size) and its box in frame pixels, which a
  rectangle keeps when the object is lost;
- the shape type the user gave (what comes back), the frame size, the session id, the
  object's id inside that session and a step counter.

Size cap: :data:`MAX_MASK_STATE_BYTES` (256 KiB of JSON text). CVAT's UI sends every state
back with every frame, all shapes of a tracker in one request; with the default of 32 shapes
per request that is at most 8 MiB of states, which leaves most of the 32 MiB request limit to
the frame. A 512-pixel JPEG is 20-60 KB and two RLE masks at that size 1-10 KB, so ordinary
states are well under the cap; a mask with very many runs (noise, thin stripes) is stored
smaller (384, 256, 160, 96 px, lower JPEG quality) until the state fits, and at 96 px even
a mask that flips at every pixel fits. The text is written and checked with
:mod:`autotrack.state` (versioned JSON, digest or HMAC with ``AUTOTRACK_STATE_KEY``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from autotrack.errors import StateError
from autotrack.masks import decode_cvat_mask, encode_cvat_mask, mask_box, mask_to_polygon
from autotrack.numbers import MAX_COORDINATE, parse_numbers, quote
from autotrack.state import PayloadReader, decode_state, decode_state_jpeg, encode_state

MAX_MASK_STATE_BYTES = 256 * 1024
MASK_STATE_VERSION = 1
PROMPT_MAX_SIDE = 512
SHAPE_TYPES = ("rectangle", "polygon", "mask")
POLYGON_TOLERANCE = 1.0  # pixels a returned polygon may stray from the mask's outline
MAX_FRAME_SIDE = 65535
MAX_RUN = MAX_FRAME_SIDE * MAX_FRAME_SIDE  # a mask's run lengths: at most a whole frame
# (longest side, JPEG quality) tried in turn until a state fits under the cap
_STORE_LEVELS = ((512, 85), (384, 80), (256, 75), (160, 70), (96, 60))
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_FIELDS = frozenset({"shape_type", "frame_size", "stored_size", "prompt_jpeg", "prompt_mask",
                     "prompt_box", "last_mask", "last_box", "session", "object_id", "step"})

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ShapePrompt:
    """One CVAT shape read as a prompt: a box (rectangles) or a mask (polygons, masks)."""

    shape_type: str
    box: Box | None = None
    mask: np.ndarray | None = None  # (H, W) bool at the frame's size



@lru_cache(maxsize=16)
def _decoded_prompt(jpeg: bytes) -> np.ndarray:
    """A state's stored frame, decoded once: a function checks it while parsing a request and
    uses it again when it restarts the object (read-only, as it is shared). StateError (not
    cached) when it does not decode."""
    small = decode_state_jpeg(jpeg, PROMPT_MAX_SIDE, "mask state prompt frame")
    small.setflags(write=False)
    return small

@dataclass(frozen=True)
class MaskTrackState:
    """In-band state of one tracked shape (see the module docstring)."""

    kind: str  # "sam2", "xmem": states of one model are refused by another
    shape_type: str  # "rectangle", "polygon" or "mask": what the user gave and gets back
    frame_size: tuple[int, int]  # (height, width) of the task's frames
    stored_size: tuple[int, int]  # (height, width) of the stored frame and masks
    prompt_jpeg: bytes
    prompt_mask: np.ndarray  # int32 CVAT RLE at stored_size; empty when the model gave none
    prompt_box: Box | None  # the rectangle drawn, else the first mask's box, in frame pixels
    last_mask: np.ndarray  # int32 CVAT RLE at stored_size; empty when lost
    last_box: Box | None  # box of the last non-empty mask, in frame pixels
    session: str  # id in the worker's SessionStore; may be gone
    object_id: int  # the object's id inside its session's segmenter
    step: int  # frames tracked since the start; a session is used only at its step

    @property
    def lost(self) -> bool:
        return len(self.last_mask) == 0

    @property
    def last_digest(self) -> str:
        """Identifies the last mask, so a live session is used only if it left this one."""
        return hashlib.sha256(np.ascontiguousarray(self.last_mask, "<i4").tobytes()).hexdigest()

    @property
    def prompt_digest(self) -> str:
        return hashlib.sha256(self.prompt_jpeg).hexdigest()

    @classmethod
    def start(cls, kind: str, image: np.ndarray, prompt: ShapePrompt, mask: np.ndarray, *,
              session: str, object_id: int) -> MaskTrackState:
        """The state of an object started on ``image`` from ``prompt``, the model giving
        ``mask`` on that frame."""
        height, width = image.shape[:2]
        side, quality = _STORE_LEVELS[0]
        stored = _stored_size(height, width, side)
        small = cv2.resize(image, stored[::-1], interpolation=cv2.INTER_AREA) \
            if stored != (height, width) else image
        first = mask if mask.any() or prompt.mask is None else prompt.mask
        last = _rle(_resize_mask(mask, stored))
        return cls(kind=kind, shape_type=prompt.shape_type, frame_size=(height, width),
                   stored_size=stored, prompt_jpeg=_jpeg(small, quality),
                   prompt_mask=_rle(_resize_mask(first, stored)),
                   prompt_box=prompt.box or _box(first),
                   last_mask=last, last_box=_box(mask) or prompt.box, session=session,
                   object_id=object_id, step=0)

    def advanced(self, mask: np.ndarray, *, session: str) -> MaskTrackState:
        """The state after one more frame whose mask is ``mask`` (empty: lost there)."""
        return replace(self, last_mask=_rle(_resize_mask(mask, self.stored_size)),
                       last_box=_box(mask) or self.last_box, session=session,
                       step=self.step + 1)

    def prompt_frame(self) -> np.ndarray:
        """The stored start frame, scaled back to the frame size (BGR)."""
        small = self.stored_prompt_frame()
        height, width = self.frame_size
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    def stored_prompt_frame(self) -> np.ndarray:
        """The stored start frame as stored (at most :data:`PROMPT_MAX_SIDE`); StateError when
        it does not decode to its stored size. A function checks it while parsing, so that a
        bad state is refused before any object of the request is started again."""
        small = _decoded_prompt(self.prompt_jpeg)
        if small.shape[:2] != self.stored_size:
            raise StateError("mask state prompt frame does not decode to its stored size")
        return small

    def restart_prompt(self) -> tuple[Box | None, np.ndarray | None]:
        """(box, mask) to start this object again on :meth:`prompt_frame`: the stored mask,
        or the stored box where the mask vanished when it was downscaled."""
        if len(self.prompt_mask):
            return None, _upscale(self.prompt_mask, self.stored_size, self.frame_size)
        return self.prompt_box, None

    # --- text ----------------------------------------------------------------------------

    def encode(self) -> str:
        """The state as JSON text under :data:`MAX_MASK_STATE_BYTES`, stored smaller when it
        would not fit (see the module docstring)."""
        state = self
        for side, quality in _STORE_LEVELS:
            if max(state.stored_size) > side:
                state = state._restored(side, quality)
            text = state._text()
            if len(text) <= MAX_MASK_STATE_BYTES:
                return text
        raise StateError(f"mask state is {len(text)} bytes even at {_STORE_LEVELS[-1][0]} px, "
                         f"over {MAX_MASK_STATE_BYTES}")  # pragma: no cover (see docstring)

    def _text(self) -> str:
        payload = {
            "shape_type": self.shape_type,
            "frame_size": np.asarray(self.frame_size, np.int32),
            "stored_size": np.asarray(self.stored_size, np.int32),
            "prompt_jpeg": np.frombuffer(self.prompt_jpeg, np.uint8),
            "prompt_mask": np.asarray(self.prompt_mask, np.int32),
            "prompt_box": np.asarray(self.prompt_box or (), np.float64),
            "last_mask": np.asarray(self.last_mask, np.int32),
            "last_box": np.asarray(self.last_box or (), np.float64),
            "session": self.session,
            "object_id": int(self.object_id),
            "step": int(self.step),
        }
        return encode_state(state_kind(self.kind), MASK_STATE_VERSION, payload)

    def _restored(self, side: int, quality: int) -> MaskTrackState:
        """The same state with its frame and masks stored at most ``side`` pixels."""
        stored = _stored_size(*self.stored_size, side)
        frame = cv2.imdecode(np.frombuffer(self.prompt_jpeg, np.uint8), cv2.IMREAD_COLOR)
        small = cv2.resize(frame, stored[::-1], interpolation=cv2.INTER_AREA)

        def shrink(rle: np.ndarray) -> np.ndarray:
            if not len(rle):
                return rle
            return _rle(_resize_mask(decode_cvat_mask(rle, *self.stored_size), stored))

        return replace(self, stored_size=stored, prompt_jpeg=_jpeg(small, quality),
                       prompt_mask=shrink(self.prompt_mask), last_mask=shrink(self.last_mask))

    @classmethod
    def decode(cls, text: object, kind: str) -> MaskTrackState:
        """Parse and check untrusted state text; every problem is a StateError."""
        _, payload = decode_state(text, state_kind(kind), (MASK_STATE_VERSION,),
                                  max_bytes=MAX_MASK_STATE_BYTES)
        if set(payload) != _FIELDS:
            missing, extra = sorted(_FIELDS - set(payload)), sorted(set(payload) - _FIELDS)
            raise StateError(f"mask state field(s) missing {missing} or unknown {extra}")
        reader = PayloadReader(payload)
        shape_type = payload["shape_type"]
        if shape_type not in SHAPE_TYPES:
            raise StateError(f"mask state shape_type must be one of {SHAPE_TYPES}")
        frame_size = _size(reader, "frame_size", (MAX_FRAME_SIDE, MAX_FRAME_SIDE))
        stored_size = _size(reader, "stored_size", frame_size)
        if max(stored_size) > PROMPT_MAX_SIDE:
            raise StateError(f"mask state stored_size is over {PROMPT_MAX_SIDE} pixels")
        jpeg = reader.array("prompt_jpeg", "u", (None,)).tobytes()
        if not jpeg.startswith(b"\xff\xd8"):
            raise StateError("mask state prompt frame is not a JPEG")
        prompt_mask = _checked_rle(reader, "prompt_mask", stored_size)
        last_mask = _checked_rle(reader, "last_mask", stored_size)
        prompt_box = _checked_box(reader, "prompt_box", frame_size)
        if not len(prompt_mask) and prompt_box is None:
            raise StateError("mask state has neither a prompt mask nor a prompt box")
        session = payload["session"]
        if not isinstance(session, str) or not _SESSION_RE.match(session):
            raise StateError("mask state session id is malformed")
        return cls(kind=kind, shape_type=shape_type, frame_size=frame_size,
                   stored_size=stored_size, prompt_jpeg=jpeg, prompt_mask=prompt_mask,
                   prompt_box=prompt_box, last_mask=last_mask,
                   last_box=_checked_box(reader, "last_box", frame_size), session=session,
                   object_id=reader.integer("object_id", 1), step=reader.integer("step"))


def state_kind(kind: str) -> str:
    return f"vos-{kind}"


# --- CVAT shapes in and out ---------------------------------------------------------------


def shape_prompt(shape_type: object, points: object, height: int, width: int) -> ShapePrompt:
    """A CVAT shape (``type`` and ``points`` as CVAT stores them) as a prompt on a frame of
    this size; ValueError says what is wrong."""
    if not isinstance(shape_type, str) or shape_type not in SHAPE_TYPES:
        raise ValueError(f"shape type {quote(shape_type)} cannot be tracked: one of "
                         f"{', '.join(SHAPE_TYPES)}")
    values = _numbers(points, shape_type)
    if shape_type == "rectangle":
        if len(values) != 4:
            raise ValueError(f"a rectangle has 4 numbers [x1, y1, x2, y2], got {len(values)}")
        x1, y1, x2, y2 = values
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"a rectangle must have x2 > x1 and y2 > y1, got {values}")
        clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)),
                   min(box[3], float(height)))
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            raise ValueError(f"rectangle {[round(v, 2) for v in box]} does not overlap the "
                             f"{width}x{height} image")
        return ShapePrompt("rectangle", box=clipped)
    if shape_type == "polygon":
        if len(values) < 6 or len(values) % 2:
            raise ValueError(f"a polygon has at least 3 points as x, y pairs, got "
                             f"{len(values)} numbers")
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(np.reshape(values, (-1, 2))).astype(np.int32)], 1)
        if not mask.any():
            raise ValueError(f"the polygon covers no pixel of the {width}x{height} image")
        return ShapePrompt("polygon", mask=mask.astype(bool))
    if any(v != int(v) for v in values):
        raise ValueError("a mask's run lengths and box must be whole numbers")
    if len(values) < 5:
        raise ValueError("a mask is run lengths then its box [x1, y1, x2, y2]")
    mask = decode_cvat_mask([int(v) for v in values], height, width)
    if not mask.any():
        raise ValueError("the mask is empty")
    return ShapePrompt("mask", mask=mask)


def shape_points(shape_type: str, mask: np.ndarray, fallback_box: Box | None = None,
                 tolerance: float = POLYGON_TOLERANCE) -> list[float] | None:
    """A mask as CVAT ``points`` of this shape type: its box for rectangles (``fallback_box``
    when empty), the outline of its largest part for polygons, CVAT's RLE for masks; None
    when there is nothing to show."""
    if shape_type == "rectangle":
        box = _box(mask) or fallback_box
        return None if box is None else [round(float(v), 2) for v in box]
    if shape_type == "polygon":
        return mask_to_polygon(mask, tolerance)
    encoded = encode_cvat_mask(mask)
    return None if encoded is None else [int(v) for v in encoded]


# --- helpers ------------------------------------------------------------------------------


def _box(mask: np.ndarray) -> Box | None:
    """The mask's box as a CVAT rectangle (pixel edges: x2 = last column + 1)."""
    box = mask_box(mask)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return float(x1), float(y1), float(x2 + 1), float(y2 + 1)


def _stored_size(height: int, width: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape[:2] == size:
        return mask.astype(bool, copy=False)
    area = cv2.resize(mask.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
    return area >= 0.5


def _upscale(rle: np.ndarray, stored: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    small = decode_cvat_mask(rle, *stored).astype(np.float32)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5


def _rle(mask: np.ndarray) -> np.ndarray:
    encoded = encode_cvat_mask(mask)
    return np.asarray(encoded or (), dtype=np.int32)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGR image
        raise StateError("cannot encode the prompt frame as JPEG")
    return data.tobytes()


def _numbers(points: object, shape_type: str) -> list[float]:
    """A shape's points (:mod:`autotrack.numbers`): pixel coordinates, or a mask's run lengths
    (at most a whole frame) and box."""
    if shape_type == "mask":
        return parse_numbers(points, "a mask's points", low=0, high=MAX_RUN)
    return parse_numbers(points, f"a {shape_type}'s points", low=-MAX_COORDINATE,
                         high=MAX_COORDINATE)


def _size(reader: PayloadReader, key: str, limit: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in reader.array(key, "i", (2,)))
    if not (1 <= height <= limit[0] and 1 <= width <= limit[1]):
        raise StateError(f"mask state {key} {height}x{width} is out of range")
    return height, width


def _checked_rle(reader: PayloadReader, key: str, size: tuple[int, int]) -> np.ndarray:
    rle = reader.array(key, "i", (None,))
    if len(rle):
        try:
            if len(rle) < 5:
                raise ValueError("too short")
            decode_cvat_mask(rle, *size)
        except ValueError as exc:
            raise StateError(f"mask state {key} is not a mask of its stored size: {exc}") \
                from None
    return rle.astype(np.int32)


def _checked_box(reader: PayloadReader, key: str, size: tuple[int, int]) -> Box | None:
    box = reader.array(key, "f", (None,))
    if not len(box):
        return None
    if len(box) != 4:
        raise StateError(f"mask state {key} must hold 4 numbers")
    x1, y1, x2, y2 = (float(v) for v in box)
    height, width = size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise StateError(f"mask state {key} lies outside its {width}x{height} frame")
    return x1, y1, x2, y2


__all__ = ["MASK_STATE_VERSION", "MAX_MASK_STATE_BYTES", "MaskTrackState", "PROMPT_MAX_SIDE",
           "SHAPE_TYPES", "ShapePrompt", "shape_points", "shape_prompt", "state_kind"]
