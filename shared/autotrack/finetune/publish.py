"""The publishing step: a round's weights as a named model in the models folder.

A round ``NAME-rN`` becomes three files in the models folder (the first AUTOTRACK_MODELS
folder unless ``--models`` says otherwise):

* ``NAME-rN.pt``: the trained weights (ultralytics' ``best.pt``), which ``autotrack annotate
  --detector NAME-rN``, the cvat-sdk functions (``-p model=str:NAME-rN``) and the Nuclio
  function (``AUTOTRACK_ULTRALYTICS_MODEL=NAME-rN``) load by name;
* ``NAME-rN.onnx``: the same model exported by ultralytics for other runtimes;
* ``NAME-rN.model.json``: the entry (format ``autotrack-model/1``): name, family, round,
  class names, image size, both files with their sha256, the base, the scores, the dataset and
  the run folder, the license.

Each file is written under a hidden temporary name and renamed into place; the entry comes
last, so a failure (a full disk) leaves no entry, and what was renamed before it is removed.
:mod:`autotrack.models` finds entries by name, and a family name (``NAME``) means its newest
round.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotrack.errors import InputError
from autotrack.models import (
    ENTRY_FORMAT,
    ENTRY_SUFFIX,
    REGISTRY,
    family_of,
    model_dirs,
    published_models,
    round_of,
    sha256_of,
)

FAMILY_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")
LICENSE = ("AGPL-3.0: trained with ultralytics from {base}; a model derived from an "
           "ultralytics checkpoint carries its license")


def check_family(name: str) -> str:
    """A family name a round can carry: lower-case letters, digits, ``-`` and ``_``, not a
    built-in model's name and not ending in a round number."""
    if not FAMILY_RE.fullmatch(name):
        raise InputError(f"--name {name!r}: use 1-41 lower-case letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    if family_of(name) != name:
        raise InputError(f"--name {name!r} ends in a round number; give the family name "
                         f"({family_of(name)}): rounds are numbered for you")
    if name in REGISTRY:
        raise InputError(f"--name {name!r} is a built-in model's name; choose another")
    return name


def models_folder(option: str | None) -> Path:
    return Path(option).expanduser() if option else model_dirs()[0]


def next_round(family: str, folder: Path) -> int:
    """1 + the highest round of ``family`` published in ``folder`` or the model folders."""
    seen = [round_of(spec.name) for spec in published_models([folder, *model_dirs()]).values()
            if family_of(spec.name) == family]
    return max(seen, default=0) + 1


def export_onnx(weights: Path, imgsz: int) -> Path:
    """ultralytics' ONNX export of ``weights`` (written beside it)."""
    from ultralytics import YOLO

    try:
        exported = YOLO(str(weights)).export(format="onnx", imgsz=imgsz, simplify=False,
                                             dynamic=False, verbose=False)
    except Exception as exc:  # a missing onnx package, an exporter failure
        raise InputError(f"the ONNX export of {weights} failed: {' '.join(str(exc).split())}"
                         "; pip install onnx (the finetune extra has it), or --no-onnx"
                         ) from None
    path = Path(str(exported))
    if not path.is_file():
        raise InputError(f"the ONNX export of {weights} wrote no file")
    return path


def publish(name: str, weights: Path, onnx: Path | None, folder: Path,
            entry: Mapping[str, Any]) -> Path:
    """Copy ``weights`` (and ``onnx``) into ``folder`` as ``name`` and write its entry last;
    returns the entry's path. InputError, with nothing left behind, when it cannot."""
    target = folder / f"{name}{ENTRY_SUFFIX}"
    if target.exists() or (folder / f"{name}.pt").exists():
        raise InputError(f"{folder} already holds a model {name}: rounds are never written over")
    placed: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind, source in (("pt", weights), ("onnx", onnx)):
            if source is None:
                continue
            final = folder / f"{name}.{kind}"
            _copy_atomic(source, final)
            placed.append(final)
            files[kind] = {"file": final.name, "sha256": sha256_of(final),
                           "bytes": final.stat().st_size}
        record = {"format": ENTRY_FORMAT, "name": name, "family": family_of(name),
                  "round": round_of(name), "kind": "detector", "framework": "ultralytics",
                  "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  **entry, "files": files}
        write_atomic(target, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise InputError(f"cannot publish {name} in {folder}: {exc.strerror or exc}"
                         f"{f' ({exc.filename})' if exc.filename else ''}; nothing was "
                         "published") from None
    return target


def write_atomic(path: Path, data: bytes | Path) -> None:
    """``data`` (bytes, or the file at that path) into ``path`` through a hidden temporary
    file in the same folder, synced, then renamed; an OSError leaves nothing."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, Path):
                with open(data, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            else:
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _copy_atomic(source: Path, path: Path) -> None:
    write_atomic(path, Path(source))
