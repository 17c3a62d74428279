"""Test fixtures: real data from ../shared/data (or $AUTOTRACK_TEST_DATA), never copied in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    configured = os.environ.get("AUTOTRACK_TEST_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data()
MODELS_DIR = SHARED_DATA / "models"
VIDEOS_DIR = SHARED_DATA / "videos"
MOT_DIR = SHARED_DATA / "mot"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}; set AUTOTRACK_TEST_DATA")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _models_from_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models resolve from ../shared/data/models; downloads are off unless a test turns them on."""
    monkeypatch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
    monkeypatch.setenv("AUTOTRACK_OFFLINE", "1")


@pytest.fixture(scope="session")
def vtest_video(shared_data: Path) -> Path:
    return shared_data / "videos" / "vtest.avi"


@pytest.fixture(scope="session")
def bedroom_dir(shared_data: Path) -> Path:
    return shared_data / "videos" / "bedroom"
