"""What every Nuclio function of ours does around its model: parse, run, answer, never raise.

A subclass says how to parse a request body, how to run the model on it and how to log the
result; this base turns every failure into the right HTTP answer (4xx for the caller's
mistakes, 500 for the model's, 503 before the model is loaded) with a JSON ``error``.

Large answers are gzip-compressed when the caller says it accepts gzip: CVAT's formats for
masks are lists of 0/1 per pixel (megabytes on a full-HD frame) and its lambda manager calls
functions with ``requests``, which sends ``Accept-Encoding: gzip`` and decodes the body
(``cvat/apps/lambda_manager/views.py``, ``LambdaGateway._http``). A caller that does not ask
gets plain JSON, so nothing depends on it.

An error answer is short whatever the request held: its message is cut to
:data:`MAX_ERROR_CHARS` characters and the whole body to :data:`MAX_ERROR_BYTES` (messages
quote at most a few characters of the input, :func:`autotrack.numbers.quote`). CVAT's lambda
manager keeps only the status of a 4xx, so every refusal is also logged, as one line with a
request id (the event's id, else a made-up one), the body's size and the answer's size and
reason, never the payload; a model failure logs its traceback's frames and the same short
reason.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from autotrack.cvat.nuclio.request import RequestError
from autotrack.errors import InputError
from autotrack.numbers import quote, shorten

USER_DATA_KEY = "autotrack"
RequestT = TypeVar("RequestT")
MAX_ERROR_CHARS = 512  # an error message, in an answer or a log line
MAX_ERROR_BYTES = 4096  # a whole error answer
_EVENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)


class LambdaFunction(Generic[RequestT]):
    """One loaded model answering CVAT requests; ``init_context`` keeps it in user_data."""

    failure_subject = "this request"  # "the model failed on <subject>"

    def parse(self, body: object) -> RequestT:
        raise NotImplementedError

    def run(self, request: RequestT) -> Any:
        raise NotImplementedError

    def describe(self, request: RequestT, result: Any, milliseconds: float) -> str:
        return f"answered in {milliseconds:.0f} ms"

    def handle(self, context: object, event: object) -> object:
        """The response to one event; never raises."""
        rid = request_id(event)
        try:
            return self._handle(context, event, rid)
        except Exception as exc:  # a bug here must still answer, not kill the worker
            return fail(context, event, rid, f"internal error: {one_line(exc)}", exc,
                        "autotrack: internal error on")

    def _handle(self, context: object, event: object, rid: str) -> object:
        started = time.perf_counter()
        try:
            request = self.parse(getattr(event, "body", None))
        except RequestError as exc:
            return refuse(context, event, rid, exc.status, str(exc), exc.field)
        ignored = getattr(request, "ignored_fields", ())
        if ignored:
            log(context, "debug", f"autotrack: request {rid} ignores fields {names(ignored)}")
        try:
            result = self.run(request)
        except RequestError as exc:  # the request was well-formed but its content is refused
            return refuse(context, event, rid, exc.status, str(exc), exc.field)
        except InputError as exc:
            return refuse(context, event, rid, 400, one_line(exc))
        except Exception as exc:
            return fail(context, event, rid, f"the model failed on {self.failure_subject}: "
                        f"{type(exc).__name__}: {one_line(exc)}", exc,
                        "autotrack: the model failed on")
        milliseconds = 1000 * (time.perf_counter() - started)
        log(context, "info", f"autotrack: {self.describe(request, result, milliseconds)}")
        return respond(context, 200, result, accepts_gzip=accepts_gzip(event))


@dataclass(frozen=True)
class ModelFromEnv:
    """A model factory for main.py: the model named by an environment variable, else a
    default. Subclasses load it (``__call__``)."""

    variable: str
    default: str

    @property
    def model(self) -> str:
        return os.environ.get(self.variable, "").strip() or self.default

    def __str__(self) -> str:
        return f"{self.model} (${self.variable}, default {self.default})"


def install_function(context: object, what: str, build: Callable[[], LambdaFunction], *,
                     signs_states: bool = False) -> LambdaFunction:
    """``init_context``'s common part: build the function, keep it in ``context.user_data``,
    log how long it took. A failure is logged as one line, then raised, so that Nuclio marks
    the function failed instead of serving errors; a function whose answers carry states warns
    when ``AUTOTRACK_STATE_KEY`` is unset (a plain digest can be recomputed after an edit)."""
    started = time.perf_counter()
    try:
        function = build()
    except Exception as exc:
        log(context, "error", f"autotrack: cannot load {what}: {one_line(exc)}")
        raise
    setattr(context.user_data, USER_DATA_KEY, function)
    if signs_states and not os.environ.get("AUTOTRACK_STATE_KEY"):
        log(context, "warn", "autotrack: AUTOTRACK_STATE_KEY is not set: tracker states carry "
                              "a plain digest, which anyone can recompute after editing one")
    log(context, "info", f"autotrack: {what} ready in {time.perf_counter() - started:.1f} s")
    return function


def handle_loaded(context: object, event: object, kind: type[LambdaFunction]) -> object:
    """Answer with the function ``init_context`` stored, or 503 if it never finished."""
    function = getattr(getattr(context, "user_data", None), USER_DATA_KEY, None)
    if not isinstance(function, kind):
        message = "the function is not initialised: init_context did not finish (see its logs)"
        log(context, "error", f"autotrack: request {request_id(event)}: {message}")
        return respond(context, 503, error_payload(503, message))
    return function.handle(context, event)


GZIP_FROM_BYTES = 16 * 1024  # smaller answers go plain: compressing them saves nothing


def accepts_gzip(event: object) -> bool:
    """Whether the request's ``Accept-Encoding`` lists gzip (header names in any case)."""
    headers = getattr(event, "headers", None) or {}
    try:
        items = list(headers.items())
    except AttributeError:
        return False
    for name, value in items:
        if str(name).lower() == "accept-encoding":
            codings = [c.split(";")[0].strip().lower() for c in str(value).split(",")]
            return "gzip" in codings or "*" in codings
    return False


def respond(context: object, status: int, payload: object, *,
            accepts_gzip: bool = False) -> object:
    """The Nuclio response: compact JSON, gzip-compressed when large and the caller accepts it."""
    response_class = getattr(context, "Response", None)
    body: str | bytes = json.dumps(payload, separators=(",", ":"))
    headers = {}
    if accepts_gzip and len(body) >= GZIP_FROM_BYTES:
        body = gzip.compress(body.encode("utf-8"), compresslevel=6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    if response_class is None:  # not a Nuclio context: plain values for a caller to wrap
        return status, body
    return response_class(body=body, headers=headers, content_type="application/json",
                          status_code=status)


def request_id(event: object) -> str:
    """The event's id when it is a short plain token, else a new random one (a log line's
    handle on one request: CVAT shows only the status of a refusal)."""
    value = getattr(event, "id", None)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return str(value)
    if isinstance(value, str) and _EVENT_ID_RE.fullmatch(value):
        return value
    return "at-" + uuid.uuid4().hex[:12]


def body_size(event: object) -> str:
    """The request body's size in words, without reading (or copying) its content."""
    body = getattr(event, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return f"{len(body)} bytes"
    if isinstance(body, memoryview):
        return f"{body.nbytes} bytes"
    if isinstance(body, str):
        return f"{len(body)} characters"
    size = getattr(event, "size", None)
    known = f", {size} bytes" if isinstance(size, int) and not isinstance(size, bool) else ""
    if isinstance(body, dict):
        return f"a parsed object of {len(body)} fields{known}"
    return f"{'no body' if body is None else 'a parsed ' + type(body).__name__}{known}"


def error_payload(status: int, message: str, field: str | None = None) -> dict[str, object]:
    """An error answer's JSON: ``error`` cut to :data:`MAX_ERROR_CHARS` characters, then to
    what fits :data:`MAX_ERROR_BYTES` once encoded (escapes can make a character 12 bytes)."""
    text = shorten(" ".join(str(message)[:2 * MAX_ERROR_CHARS].split()) or "error",
                   MAX_ERROR_CHARS)
    payload: dict[str, object] = {"error": text, "status": int(status)}
    if field is not None:
        payload["field"] = shorten(str(field), 64)
    while len(json.dumps(payload, separators=(",", ":"))) > MAX_ERROR_BYTES:
        text = shorten(text, len(text) // 2)
        payload["error"] = text
    return payload


def refuse(context: object, event: object, rid: str, status: int, message: str,
           field: str | None = None) -> object:
    """Answer a refused request (4xx) and log it: id, sizes and reason, not the payload."""
    payload = error_payload(status, message, field)
    response = respond(context, status, payload)
    log(context, "warn", f"autotrack: refused request {rid} ({status}, body "
                         f"{body_size(event)}, answer {_answer_bytes(payload)} bytes): "
                         f"{payload['error']}")
    return response


def fail(context: object, event: object, rid: str, message: str, exc: BaseException,
         what: str) -> object:
    """Answer 500 and log the failure: id, sizes, reason and the traceback's frames (the
    exception's own text only as far as the answer quotes it)."""
    payload = error_payload(500, message)
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log(context, "error", f"{what} request {rid} (body {body_size(event)}): "
                          f"{payload['error']}\nTraceback (most recent call last):\n{frames}"
                          f"{type(exc).__name__}")
    return respond(context, 500, payload)


def names(fields: tuple[str, ...] | list[str], most: int = 8) -> str:
    """Field names from a request for a log line: a few, each quoted short."""
    shown = ", ".join(quote(name) for name in list(fields)[:most])
    return shown + (f" and {len(fields) - most} more" if len(fields) > most else "")


def _answer_bytes(payload: dict[str, object]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def log(context: object, level: str, message: str) -> None:
    """Log through Nuclio's logger (debug/info/warn/error) or a stdlib-style one."""
    logger = getattr(context, "logger", None)
    method = getattr(logger, level, None) or getattr(logger, "warning", None)
    if method is None:
        print(message, file=sys.stderr)
        return
    try:
        method(message)
    except Exception:
        print(message, file=sys.stderr)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, at most a few thousand characters of it."""
    return " ".join(str(exc)[:4 * MAX_ERROR_CHARS].split()) or type(exc).__name__
