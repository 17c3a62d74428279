"""Model registry and resolver: names map to files found on disk or fetched once, checksummed.

Weights are never bundled. A name resolves against the folders in AUTOTRACK_MODELS (or the user
cache); a missing file is downloaded into the first folder unless AUTOTRACK_OFFLINE=1, written to
a temporary file and renamed only after its sha256 matches, so a half or tampered download can
never be picked up later.

Models a user publishes (``autotrack finetune``: ``street-r1``, ``street-r2``, ...) are entries
in those folders: ``NAME.model.json`` beside the files it names, written last, so a folder
holds an entry only once its files are complete. :func:`find_spec` finds them by name, and a
family name (``street``) means its newest round; their files are checked against the entry's
sha256 when they are resolved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autotrack.errors import ModelNotFoundError

_CHUNK = 1 << 20
_MOT_PIPELINE = "https://github.com/Kazuhito00/MOT-Tracking-by-Detection-Pipeline/raw/main"
_TRACKER_SAMPLE = "https://github.com/Kazuhito00/OpenCV-Object-Tracker-Python-Sample/raw/main"
_SIAM_TRACKERS = "https://github.com/HonglinChu/SiamTrackers/raw/HEAD"


@dataclass(frozen=True)
class ModelSpec:
    """Where one model file comes from and how to recognise it once it is here."""

    name: str  # registry key, e.g. "yolox-nano"
    filename: str  # our local file name; the upstream name may differ
    url: str
    sha256: str
    license: str
    source: str  # human-readable origin
    kind: str  # "detector", "reid", "sot", ...
    folder: Path | None = None  # a published model: the folder holding its entry and files
    imgsz: int | None = None  # a published model: the image size it was trained at

    @property
    def published(self) -> bool:
        return self.folder is not None


def _specs(*specs: ModelSpec) -> dict[str, ModelSpec]:
    return {spec.name: spec for spec in specs}


REGISTRY: dict[str, ModelSpec] = _specs(
    ModelSpec(
        name="yolox-nano",
        filename="yolox_nano_416x416.onnx",
        url=f"{_MOT_PIPELINE}/Detector/yolox/model/yolox_nano.onnx",
        sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        license="Apache-2.0",
        source="YOLOX-Nano (Megvii), ONNX export in Kazuhito00/MOT-Tracking-by-Detection-Pipeline",
        kind="detector",
    ),
    ModelSpec(
        name="nanodet-m",
        filename="nanodet_m_320.onnx",
        url=f"{_MOT_PIPELINE}/Detector/nanodet/model/nanodet_m_320.onnx",
        sha256="88e9fb97a54bb0030127ad323a10f88b4531b6aa82617e7ef79e35ffcc9bb3e1",
        license="Apache-2.0",
        source="NanoDet-m (RangiLyu/nanodet), from Kazuhito00/MOT-Tracking-by-Detection-Pipeline",
        kind="detector",
    ),
    ModelSpec(
        name="person-reid-0248",
        filename="person-reidentification-retail-0248.onnx",
        url=f"{_MOT_PIPELINE}/Tracker/person_reid/model/person-reidentification-retail-0248.onnx",
        sha256="43891ce644ff6f4c70cce150028e44d6cf3d150cb5a3eb75bf69bfaef0ebe789",
        license="Apache-2.0",
        source="OpenVINO Open Model Zoo, from Kazuhito00/MOT-Tracking-by-Detection-Pipeline",
        kind="reid",
    ),
    ModelSpec(
        name="person-reid-0287",
        filename="person-reidentification-retail-0287.onnx",
        url=f"{_MOT_PIPELINE}/Tracker/person_reid/model/person-reidentification-retail-0287.onnx",
        sha256="f35a22885b93aa0c249d665b4cf5510d08ded92f814694c3c2fec0112b0d3a56",
        license="Apache-2.0",
        source="OpenVINO Open Model Zoo, from Kazuhito00/MOT-Tracking-by-Detection-Pipeline",
        kind="reid",
    ),
    ModelSpec(
        name="vittrack",
        filename="object_tracking_vittrack_2023sep.onnx",
        url=f"{_TRACKER_SAMPLE}/model/vit/object_tracking_vittrack_2023sep.onnx",
        sha256="2990f0b7cd44d92afa48cd97db6de7be113fc1d9594fddb74e2725c10478e91d",
        license="Apache-2.0",
        source="VitTrack (OpenCV model zoo), from Kazuhito00/OpenCV-Object-Tracker-Python-Sample",
        kind="sot",
    ),
    ModelSpec(
        name="nanotrack-backbone",
        filename="nanotrack_backbone_sim.onnx",
        url=f"{_SIAM_TRACKERS}/NanoTrack/models/nanotrackv2/nanotrack_backbone_sim.onnx",
        sha256="530bdd0cd00f19afab79a863e71ba71e3312395a5dc9151af675082bdaaa2fc4",
        license="Apache-2.0",
        source="NanoTrack v2 backbone, HonglinChu/SiamTrackers",
        kind="sot",
    ),
    ModelSpec(
        name="nanotrack-head",
        filename="nanotrack_head_sim.onnx",
        url=f"{_SIAM_TRACKERS}/NanoTrack/models/nanotrackv2/nanotrack_head_sim.onnx",
        sha256="0d8c0637be849f092cc7236cae02e55c8b9455ebe37ba50601d6115db4247cd9",
        license="Apache-2.0",
        source="NanoTrack v2 neck and head, HonglinChu/SiamTrackers",
        kind="sot",
    ),
)


# Official ultralytics checkpoints whose digest is known (the release asset, byte for byte):
# autotrack fetches these itself and checks a copy it finds; other official names are left to
# ultralytics' own download. yolo11n.pt is `autotrack finetune`'s default base.
_ULTRALYTICS_ASSETS = "https://github.com/ultralytics/assets/releases/download"
ULTRALYTICS_CHECKPOINTS: dict[str, ModelSpec] = _specs(
    ModelSpec(
        name="yolo11n.pt",
        filename="yolo11n.pt",
        url=f"{_ULTRALYTICS_ASSETS}/v8.3.0/yolo11n.pt",
        sha256="0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
        license="AGPL-3.0",
        source="ultralytics YOLO11n (COCO), release asset v8.3.0, 5,613,764 bytes",
        kind="detector",
    ),
)


# Models built on the user's machine from a registry model instead of downloaded; found in
# the model folders like the others. ``sha256`` is what the build gives with onnxruntime 1.32
# (tools/quantize_yolox.py says whether a new build matches it); ``url`` is empty.
BUILT: dict[str, ModelSpec] = _specs(
    ModelSpec(
        name="yolox-nano-int8",
        filename="yolox_nano_416x416_int8.onnx",
        url="",
        sha256="ad116cc4013dfb013ca4f651050b6116204dd026cec83455658eb0fc8f87da05",
        license="Apache-2.0",
        source="yolox-nano quantized to int8 (per-channel weights, calibrated on every 16th "
               "frame of vtest.avi); build it with: python tools/quantize_yolox.py",
        kind="detector",
    ),
)


def model_dirs() -> list[Path]:
    """Folders searched for model files, in order; downloads go to the first one."""
    configured = os.environ.get("AUTOTRACK_MODELS", "")
    dirs = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    if dirs:
        return dirs
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [Path(cache).expanduser() / "autotrack" / "models"]


def downloads_allowed() -> bool:
    """AUTOTRACK_OFFLINE=1 (or true/yes/on) forbids any network access for models."""
    return os.environ.get("AUTOTRACK_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}


def find_spec(name: str, registry: Mapping[str, ModelSpec] | None = None) -> ModelSpec | None:
    """The registry entry whose name or local file name is `name` (case-insensitive); without
    a `registry`, also the published models in the model folders (a family name: its newest
    round)."""
    key = name.strip().lower()
    for spec in ({**REGISTRY, **BUILT} if registry is None else registry).values():
        if key in (spec.name.lower(), spec.filename.lower()):
            return spec
    if registry is not None or not ENTRY_NAME_RE.fullmatch(key):
        return None
    published = published_models()
    if key in published:
        return published[key]
    rounds = [spec for spec in published.values() if family_of(spec.name) == key]
    return max(rounds, key=lambda spec: round_of(spec.name)) if rounds else None


# --- published models -------------------------------------------------------------------------

ENTRY_SUFFIX = ".model.json"
ENTRY_FORMAT = "autotrack-model/1"
ENTRY_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_ROUND_RE = re.compile(r"(.+)-r([1-9][0-9]*)")


def family_of(name: str) -> str:
    """``street`` for ``street-r2`` (a name without a round is its own family)."""
    found = _ROUND_RE.fullmatch(name)
    return found.group(1) if found else name


def round_of(name: str) -> int:
    """2 for ``street-r2``; 0 for a name without a round."""
    found = _ROUND_RE.fullmatch(name)
    return int(found.group(2)) if found else 0


def read_entry(path: str | Path) -> dict:
    """A published model's entry (``NAME.model.json``); ValueError when it is not one."""
    path = Path(path)
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable model entry ({_one_line(exc)})") from None
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        raise ValueError(f"{path}: not a model entry of format {ENTRY_FORMAT}")
    files = entry.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("pt"), dict) or \
            entry.get("name") != path.name[: -len(ENTRY_SUFFIX)]:
        raise ValueError(f"{path}: the entry has no name matching its file or no weights")
    return entry


def spec_of_entry(entry: Mapping, folder: Path) -> ModelSpec:
    weights = entry["files"]["pt"]
    imgsz = entry.get("imgsz")
    return ModelSpec(
        name=str(entry["name"]), filename=str(weights["file"]), url="",
        sha256=str(weights["sha256"]), license=str(entry.get("license", "")),
        source=str(entry.get("source", "")), kind=str(entry.get("kind", "detector")),
        folder=folder, imgsz=int(imgsz) if isinstance(imgsz, int) else None)


def published_models(dirs: list[Path] | None = None) -> dict[str, ModelSpec]:
    """Name -> spec of every model entry in the model folders (the first folder wins a name);
    entries that cannot be read are left out (:func:`published_problems` lists them)."""
    found: dict[str, ModelSpec] = {}
    for folder in model_dirs() if dirs is None else dirs:
        for path in sorted(_entries(folder)):
            try:
                spec = spec_of_entry(read_entry(path), folder)
            except (ValueError, KeyError, TypeError):
                continue
            found.setdefault(spec.name.lower(), spec)
    return found


def published_problems(dirs: list[Path] | None = None) -> list[str]:
    problems = []
    for folder in model_dirs() if dirs is None else dirs:
        for path in sorted(_entries(folder)):
            try:
                spec_of_entry(read_entry(path), folder)
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(_one_line(exc))
    return problems


def _entries(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir()
                if p.name.endswith(ENTRY_SUFFIX) and not p.name.startswith(".")]
    except OSError:  # a folder that does not exist (yet) holds no entries
        return []


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> bool:
    """True when the file's sha256 equals `expected` (hex, any case)."""
    return sha256_of(path) == expected.strip().lower()


def resolve_model(
    name_or_path: str | Path,
    *,
    registry: Mapping[str, ModelSpec] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Path of a model file: an existing path as is, else a registry entry found or downloaded.

    `registry` replaces the built-in one (tests inject specs this way).
    """
    text = str(name_or_path)
    if Path(text).expanduser().is_file():
        return Path(text).expanduser()
    dirs = model_dirs()
    spec = find_spec(text, registry)
    if spec is not None and spec.folder is not None:
        return _published_file(spec)
    filename = spec.filename if spec else Path(text).name
    for folder in dirs:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    if spec is None:
        known = ", ".join(sorted((REGISTRY if registry is None else registry).keys()))
        if Path(text).suffix or Path(text).name != text:
            raise ModelNotFoundError(
                f"model file {text} not found, nor {filename} in {_folders(dirs)}; "
                f"set AUTOTRACK_MODELS to a folder that holds it (known models: {known})"
            )
        raise ModelNotFoundError(f"unknown model {text!r}: known models are {known}")
    if not spec.url:
        raise ModelNotFoundError(f"{_missing(spec, dirs)}; it is not downloaded but built: "
                                 f"{spec.source}")
    if not downloads_allowed():
        raise ModelNotFoundError(
            f"{_missing(spec, dirs)}; downloads are off (AUTOTRACK_OFFLINE=1); "
            f"get it from {spec.url} and set AUTOTRACK_MODELS to a folder that holds it"
        )
    return download(spec, dirs[0], timeout=timeout, searched=dirs)


def download(
    spec: ModelSpec, folder: Path, *, timeout: float = 60.0, searched: list[Path] | None = None
) -> Path:
    """Fetch spec.url into folder/spec.filename, checked against spec.sha256 before it appears."""
    searched = searched or [folder]
    target = folder / spec.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise ModelNotFoundError(
            f"{_missing(spec, searched)}; cannot write to {folder}: {_one_line(exc)}; "
            f"download {spec.url} yourself and set AUTOTRACK_MODELS to a folder that holds it"
        ) from exc
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=timeout) as rsp:
            while chunk := rsp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != spec.sha256.strip().lower():
            raise ModelNotFoundError(
                f"{_missing(spec, searched)}; the download from {spec.url} has sha256 {actual}, "
                f"expected {spec.sha256}, so it was discarded; "
                "set AUTOTRACK_MODELS to a folder that holds a verified copy"
            )
        os.replace(tmp, target)
    except ModelNotFoundError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        tmp.unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"{_missing(spec, searched)}; downloading {spec.url} failed: {_one_line(exc)}; "
            "set AUTOTRACK_MODELS to a folder that holds it"
        ) from exc
    return target


def _published_file(spec: ModelSpec) -> Path:
    """A published model's weights, checked against its entry's sha256."""
    assert spec.folder is not None
    path = spec.folder / spec.filename
    if not path.is_file():
        raise ModelNotFoundError(f"model {spec.name!r}: its entry in {spec.folder} names "
                                 f"{spec.filename}, which is not there")
    if not verify_sha256(path, spec.sha256):
        raise ModelNotFoundError(f"model {spec.name!r}: {path} has changed since it was "
                                 f"published (its sha256 is not {spec.sha256}); publish it again")
    return path


def _missing(spec: ModelSpec, dirs: list[Path]) -> str:
    return f"model {spec.name!r} ({spec.filename}) is not in {_folders(dirs)}"


def _folders(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
