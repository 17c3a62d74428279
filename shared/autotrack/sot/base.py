"""The single-object tracker (SOT) interface and the in-band state every SOT carries.

A SOT follows one object from one box: ``state = tracker.init(frame, box)``, then per frame
``box, score, state = tracker.update(frame, state)``. Boxes are ``(x1, y1, x2, y2)`` floats in
pixels, as CVAT stores rectangles.

:class:`SotState` is what leaves the process (through CVAT to the browser and back): the last
box and score, a small JPEG of the initial target with context (enough to re-initialise the
tracker anywhere), the tracker kind, a step counter and the id of a server-side session that
holds the live tracker. It is written with :func:`autotrack.state.encode_state` (versioned
JSON, digest or HMAC with ``AUTOTRACK_STATE_KEY``) and kept under :data:`MAX_SOT_STATE_BYTES`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from autotrack.errors import StateError
from autotrack.numbers import MAX_COORDINATE, NumberError, parse_numbers
from autotrack.state import PayloadReader, decode_state, encode_state

MAX_SOT_STATE_BYTES = 16 * 1024  # one shape's in-band state, as JSON text
SOT_STATE_VERSION = 1
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MAX_TEMPLATE_SIDE = 256
MIN_FRAME_SIDE = 2  # VitTrack, NanoTrack and OSTrack need frames of at least 2x2 pixels
# Their search regions grow with the box: a full-frame box on a 65000x2 frame made NanoTrack
# allocate 38 GB. No video is that thin; XMem refuses over 4:1, these trackers over 16:1.
MAX_FRAME_ASPECT = 16

Box = tuple[float, float, float, float]


def check_box(values: object, what: str = "box") -> Box:
    """Four finite numbers x1 < x2, y1 < y2 within :data:`~autotrack.numbers.MAX_COORDINATE`
    (ValueError, a :class:`~autotrack.numbers.NumberError` for the numbers, otherwise)."""
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != 4:
        raise NumberError(f"{what} must be 4 numbers [x1, y1, x2, y2]")
    out = parse_numbers(values, what, low=-MAX_COORDINATE, high=MAX_COORDINATE, count=4)
    x1, y1, x2, y2 = out
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{what} must have x2 > x1 and y2 > y1, got {out}")
    return x1, y1, x2, y2


def clip_to_frame(box: Box, shape: tuple[int, ...], allow_empty: bool = False) -> Box | None:
    """``box`` cut to the frame: a start box reaching past the frame would make every tracker
    crop (and allocate) around a centre far outside it. ValueError, or None when
    ``allow_empty``, if less than a pixel of it is on the frame."""
    height, width = shape[:2]
    x1, y1, x2, y2 = box
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        if allow_empty:
            return None
        raise ValueError(f"box {list(box)} does not overlap the {width}x{height} frame")
    return x1, y1, x2, y2


@dataclass(frozen=True)
class SotState:
    """In-band state of one tracked object (see the module docstring)."""

    kind: str  # "vittrack", "nanotrack"
    box: Box  # last box, x1 y1 x2 y2
    score: float
    template: bytes  # JPEG of the initial target with context
    template_box: Box  # the initial target's box inside the template image
    session: str  # id in the server's SessionStore; may be gone
    step: int  # updates since init; a session is used only at the step it was left at

    def with_(self, **changes: object) -> SotState:
        return replace(self, **changes)

    def encode(self) -> str:
        text = self.encode_unchecked()
        if len(text) > MAX_SOT_STATE_BYTES:
            raise StateError(f"SOT state is {len(text)} bytes, over {MAX_SOT_STATE_BYTES}")
        return text

    def encode_unchecked(self) -> str:
        score = float(self.score)
        payload = {
            "box": np.asarray(self.box, dtype=np.float64),
            "score": min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0,
            "template": np.frombuffer(self.template, dtype=np.uint8),
            "template_box": np.asarray(self.template_box, dtype=np.float64),
            "session": self.session,
            "step": int(self.step),
        }
        return encode_state(state_kind(self.kind), SOT_STATE_VERSION, payload)

    @classmethod
    def decode(cls, text: object, kind: str) -> SotState:
        """Parse and check untrusted state text; every problem is a StateError."""
        _, payload = decode_state(text, state_kind(kind), (SOT_STATE_VERSION,),
                                  max_bytes=MAX_SOT_STATE_BYTES)
        extra = set(payload) - {"box", "score", "template", "template_box", "session", "step"}
        if extra:
            raise StateError(f"SOT state has unknown fields {sorted(extra)}")
        reader = PayloadReader(payload)
        try:
            box = check_box(reader.array("box", "f", (4,)).tolist(), "state box")
            template_box = check_box(reader.array("template_box", "f", (4,)).tolist(),
                                     "state template_box")
        except ValueError as exc:
            raise StateError(str(exc)) from None
        template = reader.array("template", "u", (None,)).tobytes()
        if not template.startswith(b"\xff\xd8"):
            raise StateError("SOT state template is not a JPEG")
        score = reader.number("score", 0.0, 1.0)
        session = payload.get("session")
        if not isinstance(session, str) or not _SESSION_RE.match(session):
            raise StateError("SOT state session id is malformed")
        return cls(kind=kind, box=box, score=score, template=template,
                   template_box=template_box, session=session, step=reader.integer("step"))


def state_kind(kind: str) -> str:
    return f"sot-{kind}"


class SingleObjectTracker(Protocol):
    """One SOT model; a single instance serves many objects (its state is per object)."""

    kind: str

    def init(self, frame: np.ndarray, box: Box) -> SotState: ...

    def update(self, frame: np.ndarray, state: SotState) -> tuple[Box, float, SotState]: ...
