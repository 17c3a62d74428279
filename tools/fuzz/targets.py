"""What is fuzzed: each Nuclio function kind, the state codec and the prompt-file reader.

A target loads its function the way tests do (serverless/<function>/nuclio/main.py imported
as a module, nuclio-sdk's test platform running ``init_context`` on a first, refused call,
random-weight configs for SAM2, XMem, SAM3 and OSTrack), makes *valid* requests from real
frames, knows the mutations that mean something to it (its fields, its edge values, its
states), sends a request and says what came back (:class:`Outcome`).

Tracker targets keep the states their answers carry in a small pool: valid requests continue
them, mutations edit them, swap them between objects and sessions, or hand in another kind's.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import logging
import math
import os
import random
import secrets
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotrack.cvat.nuclio.bytetrack import DEFAULT_MAX_SHAPES as BYTETRACK_MAX_SHAPES
from autotrack.cvat.nuclio.handler_module import load_handler_module
from autotrack.cvat.nuclio.mask_tracker import DEFAULT_MAX_SHAPES as MASK_MAX_SHAPES
from autotrack.cvat.nuclio.tracker import DEFAULT_MAX_SHAPES as SOT_MAX_SHAPES
from fuzz import states as st
from fuzz import values
from fuzz.images import LIMIT_SIDE, Frames, mutate_image

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BODY_BYTES = 32 * 1024 * 1024  # function.yaml's maxRequestBodySize
MAX_PROMPT_FILE = 16 * 1024 * 1024  # autotrack.vos.prompts.MAX_FILE_BYTES
SERVERLESS = REPO_ROOT / "serverless"
MAX_DETAIL = 3000  # characters of a traceback or log kept for a violation


@dataclass
class Request:
    body: Any
    notes: list[str] = field(default_factory=list)
    headers: dict[str, str] | None = None
    wire: bytes | str | None = None  # sent instead of ``body`` when set (raw JSON text)
    size: tuple[int, int] | None = None  # (width, height) of the frame it was built on


@dataclass
class Outcome:
    status: int | None  # HTTP status; codec targets: 200 accepted, 400 refused
    escaped: str | None  # an exception that left the handler (or codec) uncaught
    seconds: float
    cpu_seconds: float  # process CPU time (all threads) spent on the request
    body_bytes: int
    error_bytes: int  # size of the error answer (4xx/5xx), 0 otherwise
    problem: str | None = None  # an error answer that is not {"error", "status"}
    detail: str | None = None  # log or traceback for 5xx and escapes
    payload: Any = None  # the parsed answer (small answers only)
    message: str | None = None  # the error answer's "error" (first 300 characters)


@contextlib.contextmanager
def environment(changes: dict[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_main(function: str) -> Any:
    """serverless/<function>/nuclio/main.py as its own module (every main.py is called main)."""
    return load_handler_module(SERVERLESS / function / "nuclio" / "main.py",
                               f"autotrack_fuzz_{function.replace('-', '_')}_main")


class _Capture(logging.Handler):
    """Keeps the function's warnings and errors of the current request (for the report)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 20:
            try:
                self.records.append(record.getMessage()[:MAX_DETAIL])
            except Exception:  # a message that cannot be formatted is itself worth seeing
                self.records.append(f"<unformattable log record: {record.msg!r:.200}>")

    def text(self) -> str:
        return "\n".join(self.records)[-MAX_DETAIL:]


def _json_size(value: object) -> int:
    try:
        return len(json.dumps(value))
    except (ValueError, TypeError, RecursionError):
        return 0


def _plain_number(value: object) -> bool:
    """A finite int or float that a float can hold (no 400-digit integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def _one_line(text: str, width: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the base of every target ----------------------------------------------------------


class Target:
    """A thing to fuzz: ``load`` once, then ``valid`` + ``mutate`` requests, ``call`` each."""

    name = "?"
    frame_size = (160, 90)
    frame_source = "bedroom"
    env: dict[str, str | None] = {}

    def __init__(self, data_dir: Path, *, quick: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.quick = quick
        self.max_side = 1024 if quick else LIMIT_SIDE

    def load(self) -> None:
        self.frames = Frames(self.data_dir, self.frame_size, self.frame_source)

    def close(self) -> None:
        pass

    def valid(self, rng: random.Random) -> Request:
        raise NotImplementedError

    def domain_ops(self) -> list[tuple[float, Callable[[Request, random.Random], str]]]:
        """(weight, op): mutations that know this target's fields; each edits the request
        in place and says what it did."""
        return []

    def mutate(self, request: Request, rng: random.Random) -> Request:
        ops = self.domain_ops() if isinstance(request.body, dict) else []
        if ops and rng.random() < 0.6:
            weights = [w for w, _ in ops]
            op = rng.choices([op for _, op in ops], weights)[0]
            request.notes.append(op(request, rng))
            return request
        body, what = values.mutate_somewhere(request.body, rng, repeat_to=self.repeat_to())
        request.body = body
        request.notes.append(what)
        return request

    def repeat_to(self) -> tuple[int, ...]:
        return (8, 100)

    def transport(self, request: Request, rng: random.Random) -> Request:
        return request

    def call(self, request: Request) -> Outcome:
        raise NotImplementedError

    def observe(self, request: Request, outcome: Outcome) -> None:
        pass


# --- Nuclio functions ----------------------------------------------------------------------


class NuclioTarget(Target):
    function = "?"
    parse_answers = False  # keep the answer's JSON (trackers harvest their states)

    def environment(self) -> dict[str, str | None]:
        models = str(self.data_dir / "models")
        base: dict[str, str | None] = {
            "AUTOTRACK_MODELS": models, "AUTOTRACK_OFFLINE": "1", "AUTOTRACK_DEVICE": None,
            "AUTOTRACK_STATE_KEY": None, "AUTOTRACK_MAX_BODY_BYTES": None,
            "AUTOTRACK_MAX_IMAGE_BYTES": None, "AUTOTRACK_MAX_IMAGE_PIXELS": None,
            "AUTOTRACK_DEFAULT_THRESHOLD": None, "AUTOTRACK_MIN_SCORE": None}
        base.update(self.env)
        if self.quick:  # a short slice fills small session stores, so RSS can settle
            base.setdefault("AUTOTRACK_SOT_MAX_SESSIONS", "8")
        return base

    def load(self) -> None:
        super().load()
        import nuclio_sdk
        import nuclio_sdk.test

        self._event = nuclio_sdk.Event
        self.capture = _Capture()
        with environment(self.environment()):
            module = load_main(self.function)
            self.platform = nuclio_sdk.test.Platform()
            self._quiet()
            self.handler = module.handler
            response = self.platform.call_handler(self.handler, nuclio_sdk.Event(body={}))
        if response.status_code != 400:  # refused, but init_context ran first
            raise RuntimeError(f"{self.function}: init_context failed: {response.body!r:.500}")
        self.function_object = self.platform._get_handler_context(self.handler).user_data \
            .autotrack

    def _quiet(self) -> None:
        logger = logging.getLogger("mock_platform")  # every test Platform logs here
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(self.capture)
        logger.propagate = False

    def close(self) -> None:
        logger = logging.getLogger("mock_platform")
        logger.removeHandler(self.capture)
        logger.propagate = True

    def transport(self, request: Request, rng: random.Random) -> Request:
        """How the body travels: as Nuclio hands a decoded JSON object (most requests), or as
        raw bytes/text, broken in transit; and odd headers."""
        roll = rng.random()
        if roll < 0.06:
            request.headers = {"Accept-Encoding": rng.choice(
                ("gzip", "gzip, deflate", "*", "GZIP;q=0", "br", "", "x" * 5000))}
            request.notes.append(f"Accept-Encoding {request.headers['Accept-Encoding'][:20]!r}")
        if roll > 0.2:
            if _json_size(request.body) <= MAX_BODY_BYTES:
                return request
            roll = 0.0  # over the trigger's limit: only ever seen raw
        try:
            text = json.dumps(request.body)
        except (ValueError, TypeError, RecursionError):
            text = "{}"
        if len(text) > MAX_BODY_BYTES:  # Nuclio's trigger would not decode it: sent raw
            request.wire = text.encode("utf-8", "surrogatepass")
            request.notes.append(f"{len(text)} bytes of JSON, sent raw")
            return request
        data = text.encode("utf-8", "surrogatepass")
        ops: list[tuple[Callable[[], bytes | str], str]] = [
            (lambda: data, "sent as JSON bytes"),
            (lambda: text, "sent as JSON text"),
            (lambda: data[: rng.randrange(len(data) + 1)], "JSON bytes truncated"),
            (lambda: data[:1] + b"\xff\xfe" + data[1:], "invalid UTF-8 in the JSON"),
            (lambda: b"\xef\xbb\xbf" + data, "UTF-8 BOM before the JSON"),
            (lambda: gzip.compress(data), "gzip-compressed JSON"),
            (lambda: b"[" * 100_000 + b"]" * 100_000, "JSON nested 100000 deep"),
            (lambda: b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "objects nested 50000 deep"),
            (lambda: data[:-1] + b',"x":' + b"[" * 3000 + b"]" * 3000 + b"}"
             if data.endswith(b"}") else data, "a field nested 3000 deep"),
            (lambda: data[:-1] + b',"threshold":1' + b"0" * 5000 + b"}"
             if data.endswith(b"}") else data, "a 5000-digit number"),
            (lambda: data[:-1] + b',"threshold":1e999}' if data.endswith(b"}") else data,
             "1e999 (infinity) in the JSON"),
            (lambda: data[:-1] + b',"image":NaN}' if data.endswith(b"}") else data,
             "a repeated key set to NaN"),
            (lambda: b"", "empty body"),
            (lambda: b" \n\t ", "whitespace body"),
            (lambda: rng.choice((b"null", b"[]", b'"text"', b"123", b"true", b"{}")),
             "a JSON value that is not an object"),
            (lambda: b"{" + b" " * (33 * 1024 * 1024) + b"}", "a 33 MiB body"),
            (lambda: data.replace(b'"', b"'"), "single-quoted JSON"),
        ]
        make, what = rng.choice(ops)
        request.wire = make()
        request.notes.append(what)
        return request

    def call(self, request: Request) -> Outcome:
        self.capture.records.clear()
        body = request.wire if request.wire is not None else request.body
        event = self._event(body=body, headers=request.headers or {},
                            content_type="application/json")
        started, cpu = time.perf_counter(), time.process_time()
        try:
            response = self.platform.call_handler(self.handler, event)
        except Exception as exc:  # what the invariants are about
            seconds = time.perf_counter() - started
            return Outcome(None, f"{type(exc).__name__}: {_one_line(exc)}", seconds,
                           time.process_time() - cpu, 0, 0,
                           detail=traceback.format_exc()[-MAX_DETAIL:])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        status = int(response.status_code)
        raw = response.body
        raw = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw or b"")
        outcome = Outcome(status, None, seconds, cpu, len(raw), len(raw) if status >= 400 else 0)
        if (response.headers or {}).get("Content-Encoding") == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                outcome.problem = "answer says gzip but is not"
                return outcome
        if status >= 400:
            try:
                error = json.loads(raw)
                ok = isinstance(error, dict) and isinstance(error.get("error"), str) \
                    and error.get("status") == status
                if ok:
                    outcome.message = error["error"][:300]
            except ValueError:
                ok = False
            if not ok:
                outcome.problem = f"error answer is not {{error, status}}: {raw[:200]!r}"
            if status >= 500:
                outcome.detail = self.capture.text()
        elif self.parse_answers and len(raw) < 4 * 1024 * 1024:
            try:
                outcome.payload = json.loads(raw)
            except ValueError:
                outcome.problem = "200 answer is not JSON"
        return outcome

    # shared domain ops -----------------------------------------------------------------

    def image_fields(self) -> tuple[str, ...]:
        return ("image",)

    def op_image(self, request: Request, rng: random.Random) -> str:
        body = request.body
        if not isinstance(body, dict):
            return "no image field (body is not an object)"
        key = rng.choice(self.image_fields())
        if rng.random() < 0.04:
            body[key] = "A" * (33 * 1024 * 1024)
            return f"{key}: 33 MiB of base64"
        body[key], what = mutate_image(body.get(key), self.frames, rng, max_side=self.max_side)
        return f"{key}: {what}"

    def op_drop_or_extra(self, request: Request, rng: random.Random) -> str:
        body = request.body
        if not isinstance(body, dict):
            return "body is not an object"
        if body and rng.random() < 0.5:
            key = rng.choice(list(body))
            del body[key]
            return f"without {key}"
        key = rng.choice(("mapping", "cleanup", "frame", "conv_mask_to_poly", "x" * 300,
                          "threshold ", "Image", "\ud800", ""))
        body[key] = values.anything(rng)
        return f"extra field {values.describe(key)} = {values.describe(body[key])}"


class DetectorTarget(NuclioTarget):
    name = "detector"
    function = "yolox"
    frame_source = "vtest"
    frame_size = (384, 288)

    def valid(self, rng: random.Random) -> Request:
        body: dict[str, Any] = {"image": self.frames.b64(rng.randrange(len(self.frames)))}
        if rng.random() < 0.5:
            body["threshold"] = rng.choice((0, 1, 0.5, 0.3, rng.random()))
        if rng.random() < 0.3:
            body["conv_mask_to_poly"] = rng.random() < 0.5
        if rng.random() < 0.3:  # what CVAT's lambda manager adds
            body.update(mapping={"person": {"name": "person"}}, cleanup=False, frame=3)
        return Request(body, size=self.frame_size)

    def op_threshold(self, request: Request, rng: random.Random) -> str:
        value = rng.choice((values.number(rng), "0.5", True, None, [0.5], 1.0000001,
                            -1e-300, 1e-300))
        request.body["threshold"] = value
        return f"threshold {values.describe(value)}"

    def op_flag(self, request: Request, rng: random.Random) -> str:
        value = rng.choice((0, 1, "true", "false", None, [], values.number(rng)))
        request.body["conv_mask_to_poly"] = value
        return f"conv_mask_to_poly {values.describe(value)}"

    def domain_ops(self):
        return [(5, self.op_image), (2, self.op_threshold), (1, self.op_flag),
                (1, self.op_drop_or_extra)]


class Sam3Target(DetectorTarget):
    name = "sam3"
    function = "sam3"
    frame_source = "bedroom"
    frame_size = (160, 90)
    labels = ("bed", "person")
    env = {"AUTOTRACK_SAM3_CHECKPOINT": "random", "AUTOTRACK_SAM3_CONFIG": "tiny",
           "AUTOTRACK_SAM3_LABELS": "bed,person", "AUTOTRACK_MIN_SCORE": "0",
           "AUTOTRACK_SAM3_BPE": None, "AUTOTRACK_SAM3_IMAGE_SIZE": None}

    def valid(self, rng: random.Random) -> Request:
        request = super().valid(rng)
        request.body.pop("mapping", None)
        if rng.random() < 0.4:
            names = rng.sample(self.labels, rng.randint(1, len(self.labels)))
            request.body["mapping"] = {n: {"name": n, "attributes": {}} for n in names}
        return request

    def op_mapping(self, request: Request, rng: random.Random) -> str:
        choice = rng.random()
        if choice < 0.2:
            mapping = {"car": {"name": "car"}}
            what = "a label the function lacks"
        elif choice < 0.35:
            mapping = {"x" * rng.choice((41, 10_000)): {"name": "x"}}
            what = "a very long label"
        elif choice < 0.5:
            mapping = {f"l{i}": {"name": "a"} for i in range(rng.choice((1000, 1001, 5000)))}
            what = f"mapping of {len(mapping)} entries"
        elif choice < 0.6:
            mapping = {}
            what = "empty mapping"
        elif choice < 0.75:
            mapping = {"bed": values.anything(rng)}
            what = f"mapping value {values.describe(mapping['bed'])}"
        else:
            mapping = values.anything(rng)
            what = f"mapping {values.describe(mapping)}"
        request.body["mapping"] = mapping
        return what

    def domain_ops(self):
        return super().domain_ops() + [(2, self.op_mapping)]


class InteractorTarget(NuclioTarget):
    name = "interactor"
    function = "sam2-interactor"
    env = {"AUTOTRACK_SAM2_RANDOM_INIT": "1", "AUTOTRACK_SAM2_IMAGE_SIZE": "128",
           "AUTOTRACK_SAM2_CHECKPOINT": None, "AUTOTRACK_INTERACTOR_MAX_POINTS": None}

    def valid(self, rng: random.Random) -> Request:
        width, height = self.frame_size
        point = lambda: [round(rng.uniform(0, width), 1), round(rng.uniform(0, height), 1)]
        body: dict[str, Any] = {"image": self.frames.b64(rng.randrange(len(self.frames))),
                                "pos_points": [point() for _ in range(rng.randint(0, 4))],
                                "neg_points": [point() for _ in range(rng.randint(0, 2))]}
        roll = rng.random()
        if roll < 0.5:
            x1, y1 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
            x2, y2 = rng.uniform(x1 + 2, width), rng.uniform(y1 + 2, height)
            body["obj_bbox"] = [[x1, y1], [x2, y2]] if rng.random() < 0.7 else [x1, y1, x2, y2]
        elif roll < 0.7:
            body["obj_bbox"] = rng.choice((None, []))
        if not body["pos_points"] and "obj_bbox" not in body and rng.random() < 0.8:
            body["pos_points"] = [point()]
        return Request(body, size=self.frame_size)

    def _edge(self, rng: random.Random, axis: int) -> Any:
        side = self.frame_size[axis]
        return rng.choice((0, -0.0, side, side + 1e-9, side + 1, -1e-9, -1, side / 2,
                           values.number(rng)))

    def op_points(self, request: Request, rng: random.Random) -> str:
        key = rng.choice(("pos_points", "neg_points"))
        points = request.body.get(key)
        points = points if isinstance(points, list) else []
        choice = rng.random()
        if choice < 0.4:
            point = [self._edge(rng, 0), self._edge(rng, 1)]
            points = points + [point]
            what = f"{key} + [{values.describe(point[0])}, {values.describe(point[1])}]"
        elif choice < 0.6:
            count = rng.choice((63, 64, 65, 1000))
            points = [[1, 1]] * count
            what = f"{key}: {count} points"
        elif choice < 0.8:
            point = rng.choice(([1], [1, 2, 3], {"x": 1, "y": 2}, "1,2", [[1, 2]], [None, 1],
                                [True, 1], [1, "2"]))
            points = points + [point]
            what = f"{key} + {values.describe(point)}"
        else:
            points = values.anything(rng)
            what = f"{key} = {values.describe(points)}"
        request.body[key] = points
        return what

    def op_box(self, request: Request, rng: random.Random) -> str:
        width, height = self.frame_size
        box = rng.choice((
            [[0, 0], [width, height]], [[5, 5], [5, 50]], [[5, 5], [5.5, 5.5]],
            [[width, height], [width + 10, height + 10]], [[-10, -10], [0.5, 0.5]],
            [[0, 0], [1e308, 1e308]], [[-1e308, -1e308], [1, 1]], [[0, 0], [2**64, 2**64]],
            [1, 2, 3], [1, 2, 3, 4, 5], [[1, 2], [3, 4], [5, 6]], [[1, 2, 3], [4, 5, 6]],
            [[float("nan"), 1], [2, 3]], [[1, 1], [2, float("inf")]], "0,0,10,10",
            {"x1": 0}, [[True, 1], [2, 3]], [10, 10, 0, 0], [[20, 20], [10, 10]]))
        request.body["obj_bbox"] = box
        return f"obj_bbox {values.describe(box)}: {str(box)[:60]}"

    def domain_ops(self):
        return [(4, self.op_image), (3, self.op_points), (2, self.op_box),
                (1, self.op_drop_or_extra)]


class TrackerTarget(NuclioTarget):
    """A CVAT tracker function: SOT boxes (vittrack, nanotrack, ostrack) or masks."""

    parse_answers = True
    max_shapes = SOT_MAX_SHAPES
    state_prefix = "sot"
    kind = "?"

    def load(self) -> None:
        super().load()
        self.pool: deque[tuple[str, tuple[int, int]]] = deque(maxlen=48)  # single states
        self.groups: deque[tuple[list[str], tuple[int, int]]] = deque(maxlen=16)  # answers
        self.foreign = {k: v for k, v in st.foreign_states(self.frames).items()
                        if k != f"{self.state_prefix}-{self.kind}"}

    def shape(self, rng: random.Random, size: tuple[int, int]) -> Any:
        width, height = size
        x1, y1 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
        box = [round(x1, 2), round(y1, 2), round(rng.uniform(x1 + 8, width), 2),
               round(rng.uniform(y1 + 8, height), 2)]
        if rng.random() < 0.25:  # a CVAT shape object (supported_shape_types declared)
            return {"type": "rectangle", "points": box, "rotation": 0.0, "label_id": 1,
                    "occluded": False, "frame": 3}
        return box

    def valid(self, rng: random.Random) -> Request:
        """Starting 1-3 objects, or continuing the objects of an earlier answer as CVAT
        does: all the states one answer gave (or some), mostly the latest answer's (its
        session is live), sometimes an older one's (stale: started again from the state)."""
        index = rng.randrange(len(self.frames))
        size = self.frame_size
        groups = [group for group, s in self.groups if s == size]
        if groups and rng.random() < 0.6:
            group = groups[-1] if rng.random() < 0.7 else rng.choice(groups)
            states: list[Any] = list(group) if rng.random() < 0.8 else \
                rng.sample(group, rng.randint(1, len(group)))
            shapes: list[Any] = [None] * len(states)
            if rng.random() < 0.2:  # and a new object started beside them
                shapes.append(self.shape(rng, size))
            return Request({"image": self.frames.b64(index), "shapes": shapes,
                            "states": states}, size=size)
        shapes = [self.shape(rng, size) for _ in range(rng.randint(1, 3))]
        return Request({"image": self.frames.b64(index), "shapes": shapes, "states": []},
                       size=size)

    def observe(self, request: Request, outcome: Outcome) -> None:
        payload = outcome.payload
        if outcome.status != 200 or not isinstance(payload, dict):
            return
        texts = [t for t in payload.get("states") or [] if isinstance(t, str)]
        if not texts:
            return
        size = self._size_of(texts[0]) or request.size or self.frame_size
        self.groups.append((texts, size))
        for text in texts:
            self.pool.append((text, size))

    def _size_of(self, text: str) -> tuple[int, int] | None:
        """(width, height) of the frame a mask state was started on (SOT states: any)."""
        payload = (st.parse(text) or {}).get("payload") or {}
        size = st.array_of(payload["frame_size"]) if "frame_size" in payload else None
        return None if size is None or size.size != 2 else (int(size[1]), int(size[0]))

    def _lists(self, request: Request) -> tuple[list, list]:
        body = request.body
        shapes = body.get("shapes") if isinstance(body.get("shapes"), list) else []
        states = body.get("states") if isinstance(body.get("states"), list) else []
        return shapes, states

    def op_state(self, request: Request, rng: random.Random) -> str:
        shapes, states = self._lists(request)
        others = [text for text, _ in self.pool]
        if not states:
            if not others:
                return self.op_shape(request, rng)
            states = [rng.choice(others)]
            request.body["shapes"] = [None] + shapes[1:] if shapes else [None]
            request.body["states"] = states
        i = rng.randrange(len(states))
        states[i], what = st.mutate_state(states[i], rng, frames=self.frames, others=others,
                                          foreign=self.foreign)
        return f"states[{i}]: {what}"

    def op_swap(self, request: Request, rng: random.Random) -> str:
        shapes, states = self._lists(request)
        others = [text for text, _ in self.pool]
        if not states or not others:
            return self.op_shape(request, rng)
        choice = rng.random()
        if choice < 0.3 and len(states) >= 2:
            states.reverse()
            return "states in reverse order"
        if choice < 0.6:
            states.append(states[0])
            shapes.append(None)
            request.body["shapes"] = shapes
            return "one state sent twice"
        if choice < 0.8:
            states.append(states[0])
            return "more states than shapes"
        shapes[:] = [None] * len(shapes)
        shapes.append(None)
        return "a shape and its state both null"

    def op_many(self, request: Request, rng: random.Random) -> str:
        """Many objects at once: up to the per-request limit and one over; continued ones
        from states of distinct (re-signed) sessions, so each must be started again."""
        others = [text for text, s in self.pool if s == request.size]
        small = (2, 3) if self.quick else (2, 8, 16)
        count = rng.choice(small + (() if self.quick else (self.max_shapes,
                                                          self.max_shapes + 1)))
        if not others or rng.random() < 0.4:
            shape = self.shape(rng, request.size or self.frame_size)
            request.body["shapes"] = [shape] * count
            request.body["states"] = []
            return f"{count} new objects"
        states = []
        for k in range(count):
            envelope = st.parse(rng.choice(others)) or {}
            payload = envelope.get("payload")
            if isinstance(payload, dict):
                payload["session"] = secrets.token_urlsafe(24)
                if "template" in payload or "prompt_jpeg" in payload:  # distinct start frames
                    key = "template" if "template" in payload else "prompt_jpeg"
                    jpeg = st.array_of(payload[key])
                    if jpeg is not None:
                        payload[key] = st.array_spec(np.concatenate(
                            [jpeg, np.frombuffer(k.to_bytes(4, "little"), np.uint8)]))
            states.append(st.resign(envelope))
        request.body["shapes"] = [None] * count
        request.body["states"] = states
        return f"{count} states of distinct sessions and start frames (re-signed)"

    def _coordinate(self, rng: random.Random, side: float) -> Any:
        return rng.choice((0, -0.0, side, side + 1, -1, 0.5, 1e6, 1e6 + 1, 1e7, -1e6,
                           values.number(rng)))

    def op_shape(self, request: Request, rng: random.Random) -> str:
        shapes, _ = self._lists(request)
        width, height = request.size or self.frame_size
        if not shapes:
            shapes = request.body["shapes"] = [self.shape(rng, (width, height))]
        i = rng.randrange(len(shapes))
        choice = rng.random()
        if choice < 0.45:
            box = [self._coordinate(rng, width), self._coordinate(rng, height),
                   self._coordinate(rng, width), self._coordinate(rng, height)]
            if rng.random() < 0.5:
                box[rng.randrange(4)] = values.number(rng)
            new: Any = box
        elif choice < 0.6:
            new = rng.choice(([1, 2, 3], [1, 2, 3, 4, 5], [], [[1, 2], [3, 4]], "1,2,3,4",
                              [5, 5, 5, 5], [10, 10, 5, 5], [0, 0, 1, 1], [0, 0, 0.9, 0.9]))
        elif choice < 0.85:
            new = {"type": rng.choice(("rectangle", "polygon", "mask", "ellipse", "points",
                                       "skeleton", None, 5, "x" * 5000, ["rectangle"])),
                   "points": self.shape(rng, (width, height)) if rng.random() < 0.7
                   else values.anything(rng),
                   "rotation": rng.choice((0, 0.0, 90, 360, 45.5, -360, 1e308, math.nan,
                                           "0", None, True, 10**400))}
        else:
            new = values.anything(rng)
        shapes[i] = new
        return f"shapes[{i}] = {values.describe(new)}: {str(new)[:80]}"

    def repeat_to(self) -> tuple[int, ...]:
        return (self.max_shapes, self.max_shapes + 1) if not self.quick else (8,)

    def domain_ops(self):
        return [(3, self.op_image), (6, self.op_state), (2, self.op_swap),
                (0.5, self.op_many), (3, self.op_shape), (1, self.op_drop_or_extra)]


class SotTarget(TrackerTarget):
    name = "vittrack"
    function = "vittrack"
    kind = "vittrack"

    def __init__(self, data_dir: Path, *, quick: bool = False, kind: str = "vittrack") -> None:
        super().__init__(data_dir, quick=quick)
        self.name = self.function = self.kind = kind
        if kind == "ostrack":
            self.env = {"AUTOTRACK_OSTRACK_PRESET": "tiny-random",
                        "AUTOTRACK_OSTRACK_CHECKPOINT": None}


class ByteTrackTarget(TrackerTarget):
    """serverless/bytetrack: YOLOX-Nano and ByteTrack's association on vtest frames (people to
    find), object states that carry the whole filter (no session)."""

    name = function = "bytetrack"
    state_prefix, kind = "bytetrack", "object"  # its states are "bytetrack-object"
    max_shapes = BYTETRACK_MAX_SHAPES
    frame_source = "vtest"
    frame_size = (384, 288)
    env = {"AUTOTRACK_BYTETRACK_DETECTOR": None, "AUTOTRACK_BYTETRACK_REID": None,
           "AUTOTRACK_BYTETRACK_BUFFER": None, "AUTOTRACK_BYTETRACK_MAX_SHAPES": None}

    def op_many(self, request: Request, rng: random.Random) -> str:
        """Many objects at once: its states hold no session, so continued ones are earlier
        states as they are (each a separate object to associate)."""
        others = [text for text, s in self.pool if s == request.size]
        if not others or rng.random() < 0.4:
            return super().op_many(request, rng)
        count = rng.choice((2, 3) if self.quick else (2, 16, self.max_shapes,
                                                      self.max_shapes + 1))
        request.body["states"] = [rng.choice(others) for _ in range(count)]
        request.body["shapes"] = [None] * count
        return f"{count} earlier states at once"

    def shape(self, rng: random.Random, size: tuple[int, int]) -> Any:
        shape = super().shape(rng, size)
        if isinstance(shape, dict) and rng.random() < 0.5:  # a label, known or not
            shape["label"] = rng.choice(("person", "car", "Person", "unicorn", "", "x" * 300))
        return shape


class MaskTrackerTarget(TrackerTarget):
    max_shapes = MASK_MAX_SHAPES
    state_prefix = "vos"
    env = {"AUTOTRACK_SAM2_RANDOM_INIT": "1", "AUTOTRACK_SAM2_IMAGE_SIZE": "128",
           "AUTOTRACK_XMEM_RANDOM_INIT": "1", "AUTOTRACK_XMEM_SIZE": "96",
           "AUTOTRACK_SAM2_CHECKPOINT": None, "AUTOTRACK_XMEM_CHECKPOINT": None,
           "AUTOTRACK_VOS_OUTPUT": None}

    def __init__(self, data_dir: Path, *, quick: bool = False, kind: str = "sam2") -> None:
        super().__init__(data_dir, quick=quick)
        self.kind = kind
        self.name = self.function = "sam2-tracker" if kind == "sam2" else "xmem"

    def shape(self, rng: random.Random, size: tuple[int, int]) -> Any:
        from autotrack.masks import encode_cvat_mask

        width, height = size
        roll = rng.random()
        if roll < 0.6:
            return super().shape(rng, size)
        x1, y1 = rng.randrange(0, width // 2), rng.randrange(0, height // 2)
        x2, y2 = rng.randrange(x1 + 4, width), rng.randrange(y1 + 4, height)
        if roll < 0.8:
            return {"type": "polygon", "points": [x1, y1, x2, y1, (x1 + x2) / 2, y2],
                    "label_id": 2}
        mask = np.zeros((height, width), bool)
        mask[y1:y2, x1:x2] = True
        return {"type": "mask", "points": encode_cvat_mask(mask), "label_id": 3}

    def op_shape(self, request: Request, rng: random.Random) -> str:
        shapes, _ = self._lists(request)
        if shapes and rng.random() < 0.4:
            i = rng.randrange(len(shapes))
            width, height = request.size or self.frame_size
            points = rng.choice((
                [0, 0, 0, 0, 0, 0], [1, 1, 2, 2, 3, 3], [0, 0, width, 0, width, height, 0, height],
                [-10, -10, -5, -10, -5, -5], [1e7, 1e7, 1e7 + 1, 1e7, 1e7, 1e7 + 1],
                [1, 2, 3, 4, 5], [width * height, 0, 0, width - 1, height - 1],
                [0, width * height - 1, 0, 0, width - 1, height - 1],
                [5, 5, 0, 0, width - 1, height - 1], [0, 10**6, 0, 0, 999, 999],
                [2**31, 0, 0, 0, 0], [1.5, 2, 0, 0, 0, 0], [-1, 2, 0, 0, 0, 0],
                [1] * 100_000 + [0, 0, 99_999, 0]))
            kind = rng.choice(("polygon", "mask"))
            shapes[i] = {"type": kind, "points": points}
            return f"shapes[{i}] = {kind} of {len(points)} numbers: {str(points)[:60]}"
        return super().op_shape(request, rng)


class ReidTarget(NuclioTarget):
    name = "reid"
    function = "reid"
    frame_source = "vtest"
    frame_size = (384, 288)
    env = {"AUTOTRACK_REID_MODEL": None, "AUTOTRACK_REID_THRESHOLD": None,
           "AUTOTRACK_REID_MAX_DISTANCE": None, "AUTOTRACK_REID_MAX_BOXES": None}

    def image_fields(self) -> tuple[str, ...]:
        return ("image0", "image1")

    def boxes(self, rng: random.Random) -> list:
        width, height = self.frame_size
        out = []
        for _ in range(rng.randint(0, 6)):
            x1, y1 = rng.uniform(0, width - 20), rng.uniform(0, height - 40)
            box = [round(x1, 2), round(y1, 2), round(x1 + rng.uniform(8, 40), 2),
                   round(y1 + rng.uniform(20, 80), 2)]
            if rng.random() < 0.7:
                out.append({"id": rng.randrange(1000), "type": "rectangle", "frame": 1,
                            "label_id": rng.choice((7, 7, 8)), "rotation": 0.0,
                            "points": box, "attributes": [], "elements": []})
            else:
                out.append(box)
        return out

    def valid(self, rng: random.Random) -> Request:
        i = rng.randrange(len(self.frames))
        body: dict[str, Any] = {"image0": self.frames.b64(i), "image1": self.frames.b64(i + 1),
                                "boxes0": self.boxes(rng), "boxes1": self.boxes(rng)}
        if rng.random() < 0.5:
            body["threshold"] = rng.choice((0.5, 0.2, 1.0, 2.0, 0))
        if rng.random() < 0.5:
            body["max_distance"] = rng.choice((50, 0, 10_000, 1.5))
        return Request(body, size=self.frame_size)

    def op_boxes(self, request: Request, rng: random.Random) -> str:
        key = rng.choice(("boxes0", "boxes1"))
        boxes = request.body.get(key)
        boxes = boxes if isinstance(boxes, list) else []
        width, height = self.frame_size
        choice = rng.random()
        if choice < 0.15:
            count = rng.choice((999, 1000, 1001) if not self.quick else (50, 100))
            template = boxes[0] if boxes else [10, 10, 50, 90]
            try:
                request.body[key] = [copy.deepcopy(template) for _ in range(count)]
            except RecursionError:  # a template nested deeper than copy can go: share it
                request.body[key] = [template] * count
            return f"{key}: {count} boxes"
        if not boxes:
            boxes = request.body[key] = self.boxes(rng) or [[10, 10, 50, 90]]
        i = rng.randrange(len(boxes))
        item = boxes[i]
        if choice < 0.55:
            coords = [rng.choice((0, width, height, -1, 1e6, -1e308, 1e308, 0.5, 10**400,
                                  math.nan, math.inf, values.number(rng))) for _ in range(4)]
            if rng.random() < 0.5:
                coords = sorted(coords[:2]) * 2 if all(_plain_number(c) for c in coords[:2]) \
                    else coords
            if isinstance(item, dict):
                item["points"] = coords
            else:
                boxes[i] = coords
            return f"{key}[{i}] points {str(coords)[:80]}"
        if isinstance(item, dict):
            field_name = rng.choice(("label_id", "rotation", "type", "points"))
            value = {
                "label_id": rng.choice((True, 1.5, "7", None, [7], {"id": 7}, 2**64, -1,
                                        "x" * 10_000)),
                "rotation": rng.choice((90, 45, 1e308, -1e308, 10**400, math.nan, "0", True,
                                        360 * 10**20)),
                "type": rng.choice(("polygon", "RECTANGLE", None, 5, "x" * 10_000,
                                    ["rectangle"], {"a": 1})),
                "points": values.anything(rng),
            }[field_name]
            item[field_name] = value
            return f"{key}[{i}].{field_name} = {values.describe(value)}"
        boxes[i] = values.anything(rng)
        return f"{key}[{i}] = {values.describe(boxes[i])}"

    def op_numbers(self, request: Request, rng: random.Random) -> str:
        key = rng.choice(("threshold", "max_distance"))
        value = rng.choice((values.number(rng), "0.5", True, None, 2.0000001, -0.0))
        request.body[key] = value
        return f"{key} {values.describe(value)}"

    def domain_ops(self):
        return [(4, self.op_image), (4, self.op_boxes), (2, self.op_numbers),
                (1, self.op_drop_or_extra)]


# --- the state codec and the prompt-file reader ---------------------------------------------


class CodecTarget(Target):
    """A function called directly; ``refusal`` is the exception type its contract names."""

    refusal: type[BaseException] = Exception

    def run(self, body: Any) -> None:
        raise NotImplementedError

    def call(self, request: Request) -> Outcome:
        body = request.wire if request.wire is not None else request.body
        started, cpu = time.perf_counter(), time.process_time()
        status, escaped, message, detail = 200, None, "", None
        try:
            self.run(body)
        except self.refusal as exc:
            status, message = 400, str(exc)
        except Exception as exc:
            status, escaped = None, f"{type(exc).__name__}: {_one_line(exc)}"
            detail = traceback.format_exc()[-MAX_DETAIL:]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        size = len(message.encode("utf-8", "surrogatepass"))
        return Outcome(status, escaped, seconds, cpu, size, size, detail=detail,
                       message=message[:300] or None)


class StateCodecTarget(CodecTarget):
    """:mod:`autotrack.state` through its readers: ``SotState.decode``,
    ``MaskTrackState.decode`` (then its prompt frame, restart prompt and re-encoding),
    ``ByteTrack.from_state`` (then one update and ``to_state``), ``GivenObject.decode`` (then
    ``encode``) and ``decode_state``."""

    name = "state"

    def load(self) -> None:
        super().load()
        from autotrack.errors import StateError

        self.refusal = StateError
        self.library = st.foreign_states(self.frames)

    def valid(self, rng: random.Random) -> Request:
        label = rng.choice(list(self.library))
        reader = label if rng.random() < 0.9 else rng.choice(list(self.library))
        return Request({"reader": reader, "state": rng.choice(self.library[label])},
                       size=self.frame_size)

    def mutate(self, request: Request, rng: random.Random) -> Request:
        body = request.body
        others = self.library.get(body["reader"], [])
        body["state"], what = st.mutate_state(body["state"], rng, frames=self.frames,
                                              others=others, foreign=self.library)
        request.notes.append(what)
        return request

    def run(self, body: Any) -> None:
        from autotrack.coco import COCO_CLASSES
        from autotrack.detections import Detections
        from autotrack.sot.base import SotState
        from autotrack.state import decode_state, decode_state_jpeg
        from autotrack.trackers.bytetrack import ByteTrack
        from autotrack.trackers.given_objects import GivenObject
        from autotrack.vos.mask_state import MaskTrackState

        reader, text = body["reader"], body["state"]
        family, _, kind = reader.partition("-")
        if family == "sot":
            state = SotState.decode(text, kind)
            decode_state_jpeg(state.template, 256, "SOT state template")
            state.encode()
        elif family == "vos":
            state = MaskTrackState.decode(text, kind)
            height, width = state.frame_size
            if height * width <= LIMIT_SIDE * LIMIT_SIDE:  # the Nuclio door's frame is checked
                state.prompt_frame()
            state.restart_prompt()
            state.advanced(np.zeros(state.frame_size, bool) if height * width <= 1 << 24
                           else np.zeros((1, 1), bool), session=state.session).encode()
        elif reader == "bytetrack":
            tracker = ByteTrack.from_state(text)
            tracker.update(Detections(np.array([[12.0, 10, 52, 60]]), np.array([0.9]),
                                      np.array([0])))
            tracker.to_state()
        elif reader == "bytetrack-object":
            GivenObject.decode(text, COCO_CLASSES).encode()
        else:
            decode_state(text, reader, (1,))


PROMPT_FRAME = (480, 270)  # width, height the prompt files are checked against
PROMPT_FRAMES = 100


class PromptsTarget(CodecTarget):
    """:func:`autotrack.vos.prompts.parse_prompts` on a file's text, then ``check`` against
    a 480x270, 100-frame video and every prompt rendered, as ``autotrack annotate`` does."""

    name = "prompts"

    def load(self) -> None:
        from autotrack.errors import InputError

        self.refusal = InputError

    def valid(self, rng: random.Random) -> Request:
        width, height = PROMPT_FRAME
        objects = []
        for k in range(rng.randint(1, 5)):
            entry: dict[str, Any] = {"id": rng.randrange(5), "label": rng.choice(("person",
                                     "cat", "bed")), "frame": rng.randrange(20) if k else 0}
            kinds = rng.sample(("box", "points", "mask"), rng.randint(1, 2))
            if "box" in kinds:
                x1, y1 = rng.randrange(width - 20), rng.randrange(height - 20)
                entry["box"] = [x1, y1, rng.randrange(x1 + 1, width), rng.randrange(y1 + 1,
                                                                                   height)]
            if "points" in kinds:
                entry["points"] = [[rng.randrange(width), rng.randrange(height)]
                                   for _ in range(rng.randint(1, 3))]
                if rng.random() < 0.5:
                    entry["point_labels"] = [1] + [rng.randint(0, 1) for _ in
                                                   entry["points"][1:]]
            if "mask" in kinds:
                if rng.random() < 0.5:
                    w, h = rng.randint(1, 20), rng.randint(1, 10)
                    runs = [rng.randint(0, w * h - 1)]
                    runs.append(w * h - runs[0])
                    entry["mask"] = {"rle": rng.choice((runs, ", ".join(map(str, runs)))),
                                     "left": rng.randrange(width - w),
                                     "top": rng.randrange(height - h), "width": w, "height": h}
                else:
                    entry["mask"] = {"polygon": [[rng.randrange(width), rng.randrange(height)]
                                                 for _ in range(rng.randint(3, 6))]}
            objects.append(entry)
        # one label per id and one entry per (id, frame), as a real file has
        labels: dict[int, str] = {}
        seen: set[tuple[int, int]] = set()
        unique = []
        for entry in objects:
            entry["label"] = labels.setdefault(entry["id"], entry["label"])
            if (entry["id"], entry["frame"]) not in seen:
                seen.add((entry["id"], entry["frame"]))
                unique.append(entry)
        body = {"objects": unique} if rng.random() < 0.8 else unique
        return Request(body, size=PROMPT_FRAME)

    def domain_ops(self):
        return [(3, self.op_field)]

    def op_field(self, request: Request, rng: random.Random) -> str:
        objects = request.body.get("objects") if isinstance(request.body, dict) else \
            request.body
        if not isinstance(objects, list) or not objects or not isinstance(objects[0], dict):
            return "nothing to edit"
        entry = rng.choice(objects)
        if not isinstance(entry, dict):
            return "nothing to edit"
        key = rng.choice(("id", "label", "frame", "box", "points", "point_labels", "mask"))
        width, height = PROMPT_FRAME
        value = {
            "id": rng.choice((-1, 2**31 - 1, 2**31, 1.0, True, "1", None, 10**400)),
            "label": rng.choice(("", " ", "x" * 257, "x" * 256, 5, None, "\ud800")),
            "frame": rng.choice((-1, 99, 100, 2**63, 1.5, True, None, 10**400)),
            "box": rng.choice(([0, 0, width, height], [0, 0, width + 1, height],
                               [5, 5, 5, 10], [0, 0, 1e308, 1e308], [0, 0, 10**400, 1],
                               [0, 0, 1, math.nan], [1, 2, 3], [[1, 2], [3, 4]])),
            "points": rng.choice(([], [[width, height]], [[width + 0.5, 0]], [1, 2, 3],
                                  [[1, 2]] * 1001, [[1, 2, 3]], [[math.inf, 0]],
                                  [[0, 0]] * 1000, [[10**400, 0]])),
            "point_labels": rng.choice(([0], [2], [True], [1, 1, 1, 1], "1", [])),
            "mask": rng.choice((
                {"rle": [0, 1], "left": width - 1, "top": height - 1, "width": 1,
                 "height": 1},
                {"rle": [0, 2], "left": width - 1, "top": 0, "width": 2, "height": 1},
                {"rle": [0, 10**12], "left": 0, "top": 0, "width": 10**6, "height": 10**6},
                {"rle": [0, 4], "left": 0, "top": 0, "width": 2, "height": 2, "polygon": []},
                {"rle": "1,,2", "left": 0, "top": 0, "width": 3, "height": 1},
                {"rle": "1, -2, 4", "left": 0, "top": 0, "width": 3, "height": 1},
                {"rle": "9" * 5000, "left": 0, "top": 0, "width": 1, "height": 1},
                {"rle": [1, 0], "left": 0, "top": 0, "width": 1, "height": 1},
                {"rle": [0, 1], "left": 0, "top": 0, "width": 1.0, "height": 1},
                {"polygon": [[0, 0], [width, 0], [width, height]]},
                {"polygon": [[0, 0], [1, 1]]}, {"polygon": [[0, 0], [10**400, 0], [0, 1]]},
                {"polygon": [[-1, 0], [5, 5], [0, 5]]}, {"polygon": [0, 0, 5, 5, 0]},
                {"polygon": [[0, 0]] * 1001}, {}, [], "rle")),
        }[key]
        entry[key] = value
        return f"{key} = {values.describe(value)}: {str(value)[:60]}"

    def transport(self, request: Request, rng: random.Random) -> Request:
        """The file's text: pretty or compact JSON, or text-level damage."""
        indent = rng.choice((None, 2))
        try:
            text = json.dumps(request.body)
            if indent and len(text) < 1_000_000 and values.depth(request.body) < 40:
                # (pretty-printed deep nesting grows with the square of the depth)
                text = json.dumps(request.body, indent=indent)
        except (ValueError, TypeError, RecursionError):
            text = "{}"
        roll = rng.random()
        if roll < 0.75:
            request.wire = text
            return self.within_file_limit(request)
        ops: list[tuple[Callable[[], str], str]] = [
            (lambda: text[: rng.randrange(len(text) + 1)], "text truncated"),
            (lambda: "\ufeff" + text, "BOM before the JSON"),
            (lambda: "[" * 100_000 + "]" * 100_000, "nested 100000 deep"),
            (lambda: '{"objects": [' + '{"id": 1, "label": "a", "frame": 0, "box": ' +
             "[" * 5000 + "]" * 5000 + "}]}", "a box nested 5000 deep"),
            (lambda: text.replace("0", "1" + "0" * 5000, 1), "a 5000-digit number"),
            (lambda: text.replace("0", "1e999", 1), "1e999 (infinity)"),
            (lambda: text.replace("0", "NaN", 1), "NaN"),
            (lambda: text.replace("0", "-0", 1), "-0"),
            (lambda: text + "\n// comment", "a trailing comment"),
            (lambda: text.replace("]", ",]", 1), "a trailing comma"),
            (lambda: text.replace("{", '{"id": 1, ', 1), "a repeated key"),
            (lambda: text.replace('"', "'"), "single quotes"),
            (lambda: "\ud800" + text, "a lone surrogate"),
            (lambda: "", "empty file"),
            (lambda: "\n" * 100_000 + "{", "100000 newlines, then broken"),
            (lambda: text.replace("\n", "\r"), "CR line ends"),
        ]
        make, what = rng.choice(ops)
        request.wire = make()
        request.notes.append(what)
        return self.within_file_limit(request)

    def within_file_limit(self, request: Request) -> Request:
        """``load_prompts`` refuses a file over 16 MiB before reading it: cut longer text."""
        if isinstance(request.wire, str) and len(request.wire) > MAX_PROMPT_FILE:
            request.wire = request.wire[:MAX_PROMPT_FILE]
            request.notes.append("cut to the 16 MiB file limit")
        return request

    def run(self, body: Any) -> None:
        from autotrack.vos.prompts import parse_prompts

        text = body if isinstance(body, str) else json.dumps(body)
        prompts = parse_prompts(text, "fuzz.json")
        width, height = PROMPT_FRAME
        prompts.check(width=width, height=height, frame_count=PROMPT_FRAMES)
        for frame in prompts.frames:
            prompts.prompts_for(frame, height, width)


def make_target(kind: str, data_dir: Path, *, quick: bool = False) -> Target:
    if kind in ("vittrack", "nanotrack", "ostrack"):
        return SotTarget(data_dir, quick=quick, kind=kind)
    if kind == "bytetrack":
        return ByteTrackTarget(data_dir, quick=quick)
    if kind in ("sam2-tracker", "xmem"):
        return MaskTrackerTarget(data_dir, quick=quick,
                                 kind="sam2" if kind == "sam2-tracker" else "xmem")
    classes = {"detector": DetectorTarget, "interactor": InteractorTarget, "reid": ReidTarget,
               "sam3": Sam3Target, "state": StateCodecTarget, "prompts": PromptsTarget}
    if kind not in classes:
        raise ValueError(f"unknown kind {kind!r}")
    return classes[kind](data_dir, quick=quick)
