"""``autotrack models list``: the built-in models and the rounds ``autotrack finetune``
published, with where each file is (or that it is still to be downloaded)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from autotrack.models import (
    REGISTRY,
    family_of,
    model_dirs,
    published_models,
    published_problems,
    read_entry,
    round_of,
)


def add_models_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "models", help="list the models autotrack knows by name",
        description="The registry's models and the rounds 'autotrack finetune' published in "
                    "the AUTOTRACK_MODELS folders.")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    listing = sub.add_parser("list", help="list them",
                             description="One line per model: name, kind, where its file is, "
                                         "and for published rounds their classes and scores.")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _find(filename: str) -> str:
    for folder in model_dirs():
        if (folder / filename).is_file():
            return str(folder / filename)
    return "not downloaded yet"


def run_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = []
    for spec in REGISTRY.values():
        rows.append({"name": spec.name, "kind": spec.kind, "file": _find(spec.filename),
                     "license": spec.license})
    published = sorted(published_models().values(),
                       key=lambda s: (family_of(s.name), round_of(s.name)))
    for spec in published:
        assert spec.folder is not None
        entry = read_entry(spec.folder / f"{spec.name}.model.json")
        new = (entry.get("scores") or {}).get("new") or {}
        rows.append({"name": spec.name, "kind": spec.kind, "file": str(spec.folder /
                                                                        spec.filename),
                     "license": spec.license, "classes": entry.get("classes"),
                     "base": (entry.get("base") or {}).get("model"),
                     "mAP50-95": new.get("mAP50-95"), "created": entry.get("created"),
                     "onnx": (entry.get("files") or {}).get("onnx", {}).get("file")})
    if args.json:
        for row in rows:
            print(json.dumps(row), file=out)
    else:
        print(f"model folders: {', '.join(str(d) for d in model_dirs())}", file=out)
        for row in rows:
            line = f"{row['name']:<22} {row['kind']:<9} {row['file']}"
            if "classes" in row:
                score = row["mAP50-95"]
                line += (f"  [round of {family_of(row['name'])}, from {row['base']}; classes "
                         f"{', '.join(row['classes'] or [])}; val mAP50-95 "
                         f"{'–' if score is None else f'{score:.3f}'}]")
            print(line, file=out)
        families = sorted({family_of(s.name) for s in published})
        if families:
            print(f"a family name means its newest round: {', '.join(families)}", file=out)
    for problem in published_problems():
        print(f"warning: {problem}", file=err)
    return 0
