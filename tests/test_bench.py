"""Every benchmark script in tools/bench still runs: its ``--quick`` mode, end to end, as a
subprocess (the way a user runs it). No timing is checked, only that it exits 0 and prints
the line its output exists for. Quick modes run on the least input that takes the real code
path (a few frames, one repeat, one seed) and write nothing but stdout/stderr and the
detection cache (``$AUTOTRACK_BENCH_CACHE``, default /tmp/autotrack-bench; a cold cache
costs a few tens of seconds once per machine)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED_DATA

BENCH = REPO_ROOT / "tools" / "bench"
LIBRARIES = {"common"}  # imported by the scripts, no main of its own
FLOAT = r"-?\d+(?:\.\d+)?"
# script -> a line its --quick output must contain (a table row with numbers, or its summary)
EXPECTED = {
    "agreement": rf"^\| synthetic 20 obj \(30 f\) +\| ours \(MOT17\) +\| +{FLOAT} \|.*\d%",
    "camera_motion": rf"^\| swaying +\| 6\.25 fps +\| ours: annotate --camera-motion +\| +"
                     rf"{FLOAT} / {FLOAT} / {FLOAT} / {FLOAT} \|$",
    "annotate_fps": rf"^\| \*\*overall\*\* +\| +{FLOAT} \| +{FLOAT} \|",
    "association": rf"^\| TUD-Campus \(71 f, 8 ids, {FLOAT}/f\) +\| ours: annotate +\| +1 \| "
                   rf"{FLOAT} ± {FLOAT} \|",
    "crossing_scenes": r"^TUD-Campus seed 0 frame 0: \d+ people pasted, 768x576, pool of \d+ "
                       r"crops; preview written and removed \(--quick\)$",
    "finetune": rf"^\| +1 \| +{FLOAT} \| +{FLOAT} \|$",
    "merge": rf"^\| made pieces +\| +1 \| +0\.90 \| +\d+ \| +\d+ \| +\d+ \| +(?:{FLOAT}|-) \|",
    "quality": rf"^\| TUD-Campus · rendered, YOLOX-Nano +\| ours ByteTrack: annotate --no-refine +\| +1 \| "
               rf"+{FLOAT} \|",
    "reid_speed": rf"^\| person-reid-0248 +\| +{FLOAT} \(\d+\) \| +{FLOAT} \(\d+\) \|",
    "sot": rf"^\| vittrack via Nuclio handler +\| TUD-Campus \(rendered, exact GT\) +\| +1/\d+ "
           rf"\| +\d+ \| +{FLOAT} \|",
    "speed_quality": rf"^\| TUD-Campus rendered +\| --detect-every 2 +\| +1 \| +{FLOAT} \|",
    "vos_memory": rf"^\| sam2-official \| bedroom \| {FLOAT} \|$",
}


def test_every_script_has_a_quick_check():
    scripts = {p.stem for p in BENCH.glob("*.py")} - LIBRARIES
    assert scripts == set(EXPECTED)


def _snapshot() -> tuple[set[str], dict[str, tuple[int, int]]]:
    """The files under tools/bench (bytecode aside) and the state of the stored results: a
    quick run adds no file there and overwrites no result."""
    files = {str(p.relative_to(BENCH)) for p in BENCH.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    results = {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
               for p in (BENCH / "results").rglob("*") if p.is_file()}
    return files, results


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_quick_mode_runs(script: str):
    before = _snapshot()
    env = dict(os.environ, AUTOTRACK_TEST_DATA=str(SHARED_DATA), PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, str(Path("tools") / "bench" / f"{script}.py"),
                          "--quick"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert re.search(EXPECTED[script], run.stdout, re.MULTILINE), run.stdout[-3000:]
    assert _snapshot() == before, "a quick run wrote into tools/bench or its results"
