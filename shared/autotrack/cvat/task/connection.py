"""A logged-in cvat-sdk client whose failures come back as one-line :class:`AutotrackError` s.

Every request made through :meth:`Server.call` has a timeout and every failure a user can
fix (bad URL, server down, wrong password, missing task, refused request) is turned into a
:class:`CvatError` subclass with one line of text: what was being done, against which server,
and what the server said.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from autotrack.errors import AutotrackError

T = TypeVar("T")

# (connect, read) seconds: small JSON requests; and media downloads and annotation reads or
# writes, which can take a server long (CVAT builds chunks on demand, and a big task's
# annotations are a large body).
JSON_TIMEOUT = (15.0, 120.0)
DATA_TIMEOUT = (15.0, 600.0)

TOKEN_ENV = "CVAT_ACCESS_TOKEN"  # the variable cvat-sdk and cvat-cli read
USER_ENV = "CVAT_USER"
PASSWORD_ENV = "CVAT_PASSWORD"
CLI_PASSWORD_ENV = "PASS"  # the variable cvat-cli reads for --auth USER


class CvatError(AutotrackError):
    """Something about the CVAT server, the credentials or the task stops the job."""


class CvatConnectionError(CvatError):
    """The URL is malformed, nothing answers there, or what answers is not CVAT."""


class CvatAuthError(CvatError):
    """The server refused the credentials (401) or the user's rights (403)."""


class CvatNotFoundError(CvatError):
    """The task or job does not exist, or the user cannot see it (404)."""


class CvatTaskError(CvatError):
    """The task exists but cannot take tracks from this tool (not a video, no data, ...)."""


class CvatRequestError(CvatError):
    """The server refused or failed a request, or answered something unexpected."""


@dataclass(frozen=True)
class Credentials:
    """A user and password, or a personal access token; never printed."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"user {self.user!r}" if self.user else "the access token"


def credentials_from(
    auth: str | None,
    token: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    prompt: Callable[[str], str] | None = None,
) -> Credentials:
    """Credentials from ``--auth USER[:PASSWORD]``, ``--token``, or the environment.

    Order: ``--auth``, ``--token``, ``$CVAT_ACCESS_TOKEN``, ``$CVAT_USER``/``$CVAT_PASSWORD``.
    A user without a password takes ``$PASS`` (as cvat-cli does) or ``$CVAT_PASSWORD``, else a
    prompt when stdin is a terminal, else it is an error (a script must never hang on a
    hidden prompt). ``token`` comes from code only; the command line has no token option
    (a token on a command line lands in shell history), as in cvat-cli.
    """
    env = os.environ if environ is None else environ
    if auth is not None and token is not None:
        raise CvatAuthError("give either a user and password or a token, not both")
    if auth is None and token is None:
        token = env.get(TOKEN_ENV) or None
        if token is None and env.get(USER_ENV):
            auth = env[USER_ENV]
    if token is not None:
        if not token.strip():
            raise CvatAuthError("the access token is empty")
        return Credentials(token=token.strip())
    if auth is None:
        raise CvatAuthError(
            f"no credentials: pass --auth USER[:PASS], or set {TOKEN_ENV} (a personal access "
            f"token) or {USER_ENV} and {PASSWORD_ENV}")
    user, sep, password = auth.partition(":")
    if not user:
        raise CvatAuthError("--auth needs a user name: --auth USER[:PASSWORD]")
    if not sep:
        password = env.get(CLI_PASSWORD_ENV, "") or env.get(PASSWORD_ENV, "")
        if not password:
            if prompt is None and sys.stdin is not None and sys.stdin.isatty():
                prompt = getpass.getpass
            if prompt is None:
                raise CvatAuthError(
                    f"no password for {user!r}: pass --auth {user}:PASS or set {CLI_PASSWORD_ENV}")
            password = prompt(f"CVAT password for {user}: ")
    return Credentials(user=user, password=password)


def normalize_url(url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash; https when no scheme is given."""
    text = url.strip()
    if not text:
        raise CvatConnectionError("the server URL is empty")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise CvatConnectionError(f"bad server URL {url!r}: the scheme must be http or https")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise CvatConnectionError(
            f"bad server URL {url!r}: the port is not a number 0-65535") from None
    if not parts.hostname:
        raise CvatConnectionError(f"bad server URL {url!r}: no host name")
    if parts.query or parts.fragment:
        raise CvatConnectionError(f"bad server URL {url!r}: it must not have a query or fragment")
    return text.rstrip("/")


def host_label(url: str) -> str:
    """The host (and port) of a URL as a file-name-safe word, e.g. ``cvat.example.com_8080``."""
    parts = urlsplit(url)
    label = parts.hostname or "server"
    if parts.port:
        label += f"_{parts.port}"
    return "".join(c if c.isalnum() or c in "-." else "_" for c in label)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _messages(value: Any, field: str = "") -> list[str]:
    """The strings in a DRF error body, each prefixed by its field (not for general errors)."""
    if isinstance(value, dict):
        return [m for key, item in value.items() for m in _messages(
            item, "" if key in ("detail", "non_field_errors") else f"{field}{key}: ")]
    if isinstance(value, list):
        return [m for item in value for m in _messages(item, field)]
    return [f"{field}{value}"]


def _server_detail(body: Any) -> str:
    """The message in a DRF error body (``{"detail": ...}``, field errors, a list), one line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return _one_line(body, 200) if "<html" not in str(body).lower() else ""
    return _one_line("; ".join(_messages(data)))


def _reason_of(exc: BaseException) -> str:
    """The innermost useful reason of a urllib3 connection failure."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused (is the server running, and is the port right?)"
    if "Name or service not known" in text or "nodename nor servname" in text or (
        "Failed to resolve" in text
    ):
        return "the host name does not resolve"
    if "timed out" in text.lower():
        return "the connection timed out"
    if "SSL" in text:
        return (f"TLS failed ({_one_line(text, 120)}); is the server plain http, or is its "
                "certificate self-signed (see --insecure)?")
    return _one_line(text, 200)


class Server:
    """A cvat-sdk client logged in to one CVAT server; :meth:`call` runs one request."""

    def __init__(self, client: Any, url: str, credentials: Credentials) -> None:
        self.client = client
        self.url = url
        self.credentials = credentials
        self.version = ""  # what /api/server/about reported

    @property
    def api(self) -> Any:
        return self.client.api_client

    def call(self, what: str, fn: Callable[..., T], *args: Any,
             timeout: tuple[float, float] = JSON_TIMEOUT, **kwargs: Any) -> T:
        """``fn(*args, **kwargs, _request_timeout=timeout)`` with errors as one-line CvatErrors.

        ``what`` says what the request is for ("read task 12"), so the message reads
        "cannot read task 12: ...".
        """
        try:
            return fn(*args, _request_timeout=timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 (translated, or re-raised below)
            translated = translate_error(exc, what, self.url, self.credentials)
            if translated is None:
                raise
            raise translated from exc

    def pages(self, what: str, fn: Callable[..., Any], *, page_size: int = 500,
              max_pages: int = 200, **query: Any) -> Iterator[Any]:
        """The items of a paged list (``fn(page=N, page_size=..., **query)``, each a DRF
        page with ``results`` and ``next``), page after page; CvatRequestError past
        ``max_pages`` (a bound on the loop, far above real lists)."""
        for page in range(1, max_pages + 1):
            result, _ = self.call(what, fn, page=page, page_size=page_size, **query)
            yield from result.results
            if not result.get("next"):
                return
        raise CvatRequestError(f"cannot {what}: the list runs past {max_pages} pages of "
                               f"{page_size}")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 (closing must never mask the real outcome)
            pass


def translate_error(exc: BaseException, what: str, url: str,
                    credentials: Credentials | None = None) -> CvatError | None:
    """A one-line CvatError for a failure a user can act on; None for anything else (a bug)."""
    import urllib3
    from cvat_sdk.api_client import exceptions as api_exc

    who = credentials.describe() if credentials else "these credentials"
    if (isinstance(exc, AttributeError) and isinstance(exc.__context__, api_exc.ApiException)
            and exc.__context__.body is None):
        # cvat-sdk fails to decode the empty body of its own status-0 (TLS) error: report that.
        exc = exc.__context__
    if isinstance(exc, api_exc.ApiException):
        status = exc.status or 0
        detail = _server_detail(exc.body)
        suffix = f": {detail}" if detail else ""
        if status == 0:
            hint = " (a self-signed certificate? see --insecure)" if "SSL" in str(
                exc.reason) else ""
            return CvatConnectionError(f"cannot {what}: no answer from {url}: "
                                       f"{_one_line(exc.reason or '', 200)}{hint}")
        if status == 401:
            return CvatAuthError(f"cannot {what}: {url} does not accept {who} "
                                 f"(401 Unauthorized){suffix}")
        if status == 403:
            return CvatAuthError(f"cannot {what}: 403 Forbidden for {who}{suffix}")
        if status == 404:
            return CvatNotFoundError(f"cannot {what}: not found on {url} (404), or not "
                                     f"visible to {who}")
        return CvatRequestError(f"cannot {what}: {url} answered {status} {exc.reason or ''}"
                                f"{suffix}".rstrip())
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return CvatConnectionError(f"cannot {what}: cannot reach {url}: {_reason_of(exc)}")
    if isinstance(exc, (api_exc.ApiTypeError, api_exc.ApiValueError, api_exc.ApiKeyError,
                        api_exc.ApiAttributeError)):
        return CvatRequestError(f"cannot {what}: unexpected answer from {url} (is it CVAT, and "
                                f"of a version cvat-sdk supports?): {_one_line(str(exc), 200)}")
    return None


def connect(url: str, credentials: Credentials, *, organization: str | None = None,
            verify_ssl: bool = True) -> Server:
    """Check that ``url`` is a CVAT server, log in, and return the session.

    The server's ``/api/server/about`` must answer first, so a wrong URL fails as "not CVAT"
    rather than as bad credentials. A password login gets a session cookie and CSRF token
    (as cvat-sdk does); a token is sent as a bearer header and checked by the first request.
    """
    from cvat_sdk.core.client import Client, Config
    from cvat_sdk.core.exceptions import InvalidHostException

    url = normalize_url(url)
    try:
        client = Client(url, config=Config(verify_ssl=verify_ssl), check_server_version=False)
    except InvalidHostException as exc:
        raise CvatConnectionError(f"bad server URL {url!r}: {exc}") from None
    server = Server(client, url, credentials)
    try:
        _log_in(server, organization)
    except BaseException:
        server.close()
        raise
    return server


def _log_in(server: Server, organization: str | None) -> None:
    from cvat_sdk.api_client import exceptions as api_exc
    from cvat_sdk.api_client import models
    from cvat_sdk.core.client import AccessTokenCredentials

    client, url, credentials = server.client, server.url, server.credentials
    try:
        about, _ = server.call("connect to CVAT", client.api_client.server_api.retrieve_about)
    except CvatNotFoundError:
        raise CvatConnectionError(
            f"{url} does not look like a CVAT server: GET /api/server/about answered 404 "
            "(check the URL and any path prefix)") from None
    except CvatError as exc:
        if isinstance(exc, CvatConnectionError):
            raise
        raise CvatConnectionError(f"{url} does not look like a CVAT server: {exc}") from None
    server.version = str(about.version)
    if organization is not None:
        client.organization_slug = organization
    if credentials.token:
        client.login(AccessTokenCredentials(credentials.token))
        return
    request = models.LoginSerializerExRequest(username=credentials.user,
                                              password=credentials.password)
    try:
        server.call("log in", client.api_client.auth_api.create_login, request)
    except CvatRequestError as exc:
        cause = exc.__cause__
        if isinstance(cause, api_exc.ApiException) and cause.status == 400:
            # CVAT answers a wrong user or password with 400 and a non-field error.
            raise CvatAuthError(
                f"cannot log in to {url} as {credentials.user!r}: wrong user name or password "
                f"({_server_detail(cause.body) or '400 Bad Request'})") from None
        raise
    cookies = client.api_client.cookies
    if "sessionid" not in cookies or "csrftoken" not in cookies:
        raise CvatAuthError(f"cannot log in to {url}: the server set no session cookie")
    # As cvat-sdk's Client.login: echo the CSRF cookie in a header on every request.
    client.api_client.configuration.api_key["csrfHeaderAuth"] = cookies["csrftoken"].value
