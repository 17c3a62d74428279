"""The reference the SOT benchmark holds the 35 vtest clips to (issue 15), checked by eye and
stored in tools/bench/reference/vtest-clips-checked.csv: it must belong to the clips as the
benchmark defines them today (the same start box on the same frame, from the same detector on
the same video), and say only what a reference can say (one box a frame, inside the picture,
within its clip)."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from types import ModuleType

import cv2
import numpy as np
import pytest

from conftest import MODELS_DIR, REPO_ROOT

WIDTH, HEIGHT = 768, 576


@pytest.fixture(scope="module")
def sot() -> ModuleType:
    """The benchmark itself (its clip rule, its reader of the file), imported with the model
    settings it would set for good held only for the import."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "tools" / "bench"))
        patch.setenv("AUTOTRACK_MODELS", str(MODELS_DIR))
        patch.setenv("AUTOTRACK_OFFLINE", "1")
        module = importlib.import_module("sot")
    sys.modules.pop("sot", None)
    return module


@pytest.fixture(scope="module")
def rows(sot: ModuleType) -> np.ndarray:
    return np.loadtxt(sot.CHECKED_REFERENCE, delimiter=",", skiprows=1, ndmin=2)


def test_every_clip_has_a_start_and_stays_inside_itself(sot, rows):
    assert sorted(set(rows[:, 0].astype(int))) == list(sot.CLIP_STARTS)
    for start in sot.CLIP_STARTS:
        frames = rows[rows[:, 0] == start, 1].astype(int)
        assert frames[0] == start and len(set(frames)) == len(frames)
        assert frames.max() < start + sot.CLIP_LENGTH
    x1, y1, x2, y2 = rows[:, 2:6].T
    assert np.all((0 <= x1) & (x1 < x2) & (x2 <= WIDTH) & (0 <= y1) & (y1 < y2) & (y2 <= HEIGHT))


def test_the_start_boxes_are_the_clip_rules_on_yolox_nano(sot, rows, vtest_video):
    """YOLOX-Nano on each clip's first frame, the benchmark's start rule: the file's first box.
    A new detector, model file or video would start the clips on other people."""
    from autotrack.detectors import load_detector

    detector = load_detector("yolox-nano", min_score=0.1)
    capture = cv2.VideoCapture(str(vtest_video))
    try:
        for start in sot.CLIP_STARTS:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            ok, frame = capture.read()
            assert ok
            expected = sot.clip_start_box(detector.detect(frame))
            stored = rows[(rows[:, 0] == start) & (rows[:, 1] == start), 2:6][0]
            np.testing.assert_allclose(stored, expected, atol=0.05, err_msg=f"clip {start}")
    finally:
        capture.release()


def test_the_benchmark_reads_it_onto_its_clips(sot, rows):
    """checked_clips puts each row on its clip frame and refuses a file that does not start
    where the clip does."""
    def row(start: int, frame: int) -> np.ndarray:
        return rows[(rows[:, 0] == start) & (rows[:, 1] == frame), 2:6]

    clips = [sot.SotSequence(f"clip/{s}", s, np.vstack([row(s, s), np.full((99, 4), np.nan)]))
             for s in sot.CLIP_STARTS]
    checked = sot.checked_clips(clips)
    scored = sum(int(np.isfinite(c.gt[1:, 0]).sum()) for c in checked)
    assert scored == len(rows) - len(sot.CLIP_STARTS)
    clip_40 = next(c for c in checked if c.start == 40)
    np.testing.assert_array_equal(clip_40.gt[30], row(40, 70)[0])
    moved = [replace(clips[0], gt=clips[0].gt + 5.0), *clips[1:]]
    with pytest.raises(SystemExit, match="clip 0 starts on"):
        sot.checked_clips(moved)
