"""One cv2 per environment.

``opencv-python`` and ``opencv-python-headless`` both install the top-level ``cv2`` package
into the same folder; with both installed, which one's files win depends on the install
order (and uninstalling either breaks the other). Every peer we test against (ultralytics,
trackers, trackeval, deep-sort-realtime) pulls ``opencv-python``, so that is our core
dependency too, and an environment must hold it alone.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import distribution, distributions, packages_distributions

from conftest import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _required_by(name: str) -> list[str]:
    """Installed distributions that require ``name`` (markers ignored)."""
    return sorted({d.metadata["Name"] for d in distributions()
                   for r in d.requires or [] if _name(r) == name and "extra ==" not in r})


def test_core_dependency_is_opencv_python():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = [_name(r) for r in project["dependencies"]]
    assert "opencv-python" in names and "opencv-python-headless" not in names
    installed = [_name(r) for r in distribution("cvat-autotrack").requires or []
                 if "extra ==" not in r]
    assert "opencv-python" in installed, "the installed metadata is stale: pip install -e ."


def test_exactly_one_distribution_provides_cv2():
    providers = sorted(set(packages_distributions().get("cv2", [])))
    why = {p: _required_by(p.lower()) for p in providers}
    assert providers == ["opencv-python"], (
        f"cv2 comes from {providers} (required by {why}); "
        "exactly one, opencv-python, is wanted")
    import cv2

    files = {str(f) for f in distribution("opencv-python").files or []}
    assert any(f.startswith("cv2/") for f in files)
    assert cv2.__version__.split(".")[0] == distribution("opencv-python").version.split(".")[0]
