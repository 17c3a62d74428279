"""What every Nuclio function of ours does around its model: parse, run, answer, never raise.

A subclass says how to parse a request body, how to run the model on it and how to log the
result; this base turns every failure into the right HTTP answer (4xx for the caller's
mistakes, 500 for the model's, 503 before the model is loaded) with a JSON ``error``.

Large answers are gzip-compressed when the caller says it accepts gzip: CVAT's formats for
masks are lists of 0/1 per pixel (megabytes on a full-HD frame) and its lambda manager calls
functions with ``requests``, which sends ``Accept-Encoding: gzip`` and decodes the body
(``cvat/apps/lambda_manager/views.py``, ``LambdaGateway._http``). A caller that does not ask
gets plain JSON, so nothing depends on it.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from autotrack.cvat.nuclio.request import RequestError
from autotrack.errors import InputError

USER_DATA_KEY = "autotrack"
RequestT = TypeVar("RequestT")


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
        try:
            return self._handle(context, event)
        except Exception as exc:  # a bug here must still answer, not kill the worker
            log(context, "error", f"autotrack: internal error: {one_line(exc)}\n"
                                  f"{traceback.format_exc()}")
            return respond(context, 500, {"error": f"internal error: {one_line(exc)}",
                                          "status": 500})

    def _handle(self, context: object, event: object) -> object:
        started = time.perf_counter()
        try:
            request = self.parse(getattr(event, "body", None))
        except RequestError as exc:
            log(context, "warn", f"autotrack: refused request ({exc.status}): {exc}")
            return respond(context, exc.status, exc.to_json())
        ignored = getattr(request, "ignored_fields", ())
        if ignored:
            log(context, "debug", f"autotrack: ignoring fields {', '.join(ignored)}")
        try:
            result = self.run(request)
        except RequestError as exc:  # the request was well-formed but its content is refused
            log(context, "warn", f"autotrack: refused request ({exc.status}): {exc}")
            return respond(context, exc.status, exc.to_json())
        except InputError as exc:
            log(context, "warn", f"autotrack: refused request: {one_line(exc)}")
            return respond(context, 400, {"error": one_line(exc), "status": 400})
        except Exception as exc:
            log(context, "error", f"autotrack: the model failed: {one_line(exc)}\n"
                                  f"{traceback.format_exc()}")
            return respond(context, 500, {
                "error": f"the model failed on {self.failure_subject}: "
                         f"{type(exc).__name__}: {one_line(exc)}",
                "status": 500,
            })
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
        log(context, "error", f"autotrack: {message}")
        return respond(context, 503, {"error": message, "status": 503})
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
    return " ".join(str(exc).split()) or type(exc).__name__
