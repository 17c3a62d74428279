"""Model resolution against the real shared weights, and real downloads from a local server."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest

from autotrack.errors import ModelNotFoundError
from autotrack.models import (
    REGISTRY,
    ModelSpec,
    find_spec,
    model_dirs,
    resolve_model,
    sha256_of,
    verify_sha256,
)
from conftest import MODELS_DIR

PAYLOAD = b"not really a model, but bytes a checksum can vouch for\n" * 100


def _spec(url: str, sha256: str, filename: str = "tiny.onnx") -> ModelSpec:
    return ModelSpec(
        name="tiny",
        filename=filename,
        url=url,
        sha256=sha256,
        license="CC0-1.0",
        source="made up by the test",
        kind="detector",
    )


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving PAYLOAD as /tiny.bin; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "tiny.bin").write_bytes(PAYLOAD)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    _CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_CountingHandler, directory=str(served))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_registry_has_the_shared_models() -> None:
    expected = {
        "yolox-nano": "detector",
        "nanodet-m": "detector",
        "person-reid-0248": "reid",
        "person-reid-0287": "reid",
        "vittrack": "sot",
        "nanotrack-backbone": "sot",
        "nanotrack-head": "sot",
    }
    assert {name: spec.kind for name, spec in REGISTRY.items()} == expected
    for spec in REGISTRY.values():
        assert spec.url.startswith("https://github.com/")
        assert len(spec.sha256) == 64 and spec.license == "Apache-2.0"


def test_every_registry_file_matches_its_sha256() -> None:
    lines = (MODELS_DIR / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split() for line in lines)}
    for spec in REGISTRY.values():
        path = MODELS_DIR / spec.filename
        assert path.is_file(), spec.filename
        assert sums[spec.filename] == spec.sha256
        assert verify_sha256(path, spec.sha256), spec.name


def test_resolves_name_filename_and_path_from_autotrack_models() -> None:
    expected = MODELS_DIR / "yolox_nano_416x416.onnx"
    assert resolve_model("yolox-nano") == expected
    assert resolve_model("YOLOX-Nano") == expected
    assert resolve_model("yolox_nano_416x416.onnx") == expected
    assert resolve_model(str(expected)) == expected
    assert find_spec("person-reidentification-retail-0248.onnx") is REGISTRY["person-reid-0248"]


def test_model_dirs_searches_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tmp_path / "first"
    monkeypatch.setenv("AUTOTRACK_MODELS", os.pathsep.join([str(first), "", str(MODELS_DIR)]))
    assert model_dirs() == [first, MODELS_DIR]
    assert resolve_model("vittrack") == MODELS_DIR / "object_tracking_vittrack_2023sep.onnx"


def test_model_dirs_defaults_to_the_xdg_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOTRACK_MODELS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_dirs() == [tmp_path / "autotrack" / "models"]


def test_verify_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert sha256_of(path) == digest
    assert verify_sha256(path, digest.upper())
    assert not verify_sha256(path, "0" * 64)


def test_downloads_once_into_the_first_folder(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target_dir = tmp_path / "cache" / "models"  # does not exist yet
    monkeypatch.setenv("AUTOTRACK_MODELS", os.pathsep.join([str(target_dir), str(MODELS_DIR)]))
    monkeypatch.setenv("AUTOTRACK_OFFLINE", "0")
    registry = {"tiny": _spec(f"{server}/tiny.bin", hashlib.sha256(PAYLOAD).hexdigest())}

    path = resolve_model("tiny", registry=registry, timeout=5)

    assert path == target_dir / "tiny.onnx"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in target_dir.iterdir()) == ["tiny.onnx"]  # no temp file left
    assert resolve_model("tiny", registry=registry) == path
    assert _CountingHandler.requests == ["/tiny.bin"]  # the second call found it on disk


def test_sha_mismatch_is_refused_and_leaves_nothing(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target_dir = tmp_path / "models"
    monkeypatch.setenv("AUTOTRACK_MODELS", str(target_dir))
    monkeypatch.setenv("AUTOTRACK_OFFLINE", "0")
    registry = {"tiny": _spec(f"{server}/tiny.bin", "ab" * 32)}

    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("tiny", registry=registry, timeout=5)

    message = str(info.value)
    assert "\n" not in message
    assert "sha256" in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert list(target_dir.iterdir()) == []


def test_failed_download_is_one_line(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target_dir = tmp_path / "models"
    monkeypatch.setenv("AUTOTRACK_MODELS", str(target_dir))
    monkeypatch.setenv("AUTOTRACK_OFFLINE", "0")
    registry = {"tiny": _spec(f"{server}/missing.bin", "ab" * 32)}

    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("tiny", registry=registry, timeout=5)

    message = str(info.value)
    assert "\n" not in message and "404" in message and f"{server}/missing.bin" in message
    assert list(target_dir.iterdir()) == []


def test_offline_missing_model_names_file_url_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    url = "https://example.invalid/models/tiny.onnx"  # never contacted: offline
    registry = {"tiny": _spec(url, "ab" * 32)}

    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("tiny", registry=registry)

    message = str(info.value)
    assert "\n" not in message
    for part in ("'tiny'", "tiny.onnx", str(tmp_path), url, "AUTOTRACK_MODELS"):
        assert part in message


def test_offline_missing_registry_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTRACK_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"yolox_nano_416x416\.onnx") as info:
        resolve_model("yolox-nano")
    assert REGISTRY["yolox-nano"].url in str(info.value)


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("yolox-giant")
    message = str(info.value)
    assert "\n" not in message and "yolox-nano" in message and "vittrack" in message


def test_missing_path_is_reported_as_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "mine.onnx"
    with pytest.raises(ModelNotFoundError, match="AUTOTRACK_MODELS") as info:
        resolve_model(missing)
    assert str(missing) in str(info.value)
