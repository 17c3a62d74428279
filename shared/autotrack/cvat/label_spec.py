"""The label spec a Nuclio function declares to CVAT, generated from a detector's class names.

CVAT reads ``metadata.annotations.spec`` of every deployed function: a JSON list of
``{"id", "name", "type"}`` whose names must be unique (CVAT drops a function whose aren't) and
whose types decide which task labels a model label may map to ("mask" and "polygon" map to
each other). Since function.yaml is static, a function for another model needs its spec
regenerated::

    python -m autotrack.cvat.label_spec best.pt                 # JSON list
    python -m autotrack.cvat.label_spec best.pt --format yaml   # block to paste in function.yaml
    python -m autotrack.cvat.label_spec best.pt --check serverless/ultralytics/nuclio/function.yaml

``--check`` exits 1 and says what differs when a function.yaml does not match the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from autotrack.detectors.base import makes_masks

SHAPE_TYPES = ("rectangle", "mask", "polygon")
_SHOWN_MISMATCHES = 5


def label_spec(class_names: Sequence[str], shape_type: str = "rectangle") -> list[dict]:
    """One spec entry per class, ids the class indices, so CVAT's names map to ours."""
    if shape_type not in SHAPE_TYPES:
        raise ValueError(f"shape type must be one of {', '.join(SHAPE_TYPES)}, got {shape_type!r}")
    names = [str(name) for name in class_names]
    if not names:
        raise ValueError("a detector with no classes has no label spec")
    blank = [i for i, name in enumerate(names) if not name.strip()]
    if blank:
        raise ValueError(f"class {blank[0]} has an empty name; CVAT needs a name for every label")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"class names repeat ({', '.join(repeated[:5])}); CVAT refuses a function whose "
            "labels are not unique"
        )
    return [{"id": i, "name": name, "type": shape_type} for i, name in enumerate(names)]


def spec_json(spec: Sequence[dict]) -> str:
    """The spec as CVAT's own function.yaml files write it: one label per line."""
    rows = [
        "  { " + ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                           for k, v in entry.items()) + " }"
        for entry in spec
    ]
    return "[\n" + ",\n".join(rows) + "\n]"


def spec_yaml_block(spec: Sequence[dict], indent: int = 4) -> str:
    """``spec: |`` and the JSON beneath it, indented to sit under metadata.annotations."""
    pad = " " * indent
    body = "\n".join(pad + "  " + line for line in spec_json(spec).splitlines())
    return f"{pad}spec: |\n{body}"


def parse_spec(text: str) -> list[dict]:
    """A function.yaml spec annotation as a list of labels, or ValueError saying why not."""
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the spec is not valid JSON: {exc}") from None
    if not isinstance(spec, list) or not all(isinstance(e, dict) for e in spec):
        raise ValueError("the spec must be a JSON list of label objects")
    for i, entry in enumerate(spec):
        if not isinstance(entry.get("name"), str):
            raise ValueError(f"label {i} of the spec has no name")
    return spec


def spec_problems(
    spec: Sequence[dict], class_names: Sequence[str], shape_type: str | None = None
) -> list[str]:
    """What keeps a spec from describing a model with these classes (empty when it does)."""
    problems = []
    names = [str(entry.get("name")) for entry in spec]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"label names repeat: {', '.join(repeated[:_SHOWN_MISMATCHES])}")
    wanted = [str(name) for name in class_names]
    if len(names) != len(wanted):
        problems.append(f"the spec lists {len(names)} labels, the model has {len(wanted)} classes")
    differ = [i for i, (a, b) in enumerate(zip(names, wanted)) if a != b]
    for i in differ[:_SHOWN_MISMATCHES]:
        problems.append(f"label {i} is {names[i]!r} in the spec but {wanted[i]!r} in the model")
    if len(differ) > _SHOWN_MISMATCHES:
        problems.append(f"... and {len(differ) - _SHOWN_MISMATCHES} more labels differ")
    ids = [entry.get("id") for entry in spec]
    if ids != list(range(len(spec))) and not differ:
        problems.append("label ids are not the class indices 0, 1, 2, ...")
    if shape_type is not None:
        types = sorted({str(entry.get("type", "unknown")) for entry in spec})
        if types != [shape_type]:
            problems.append(
                f"labels have type {', '.join(types)} but the model gives {shape_type} shapes"
            )
    return problems


def detector_shape_type(detector: object) -> str:
    """"mask" for a segmentation model, else "rectangle"."""
    return "mask" if makes_masks(detector) else "rectangle"


def function_yaml_spec(path: str | Path) -> list[dict]:
    """The label spec declared in a function.yaml (needs PyYAML)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
    try:
        text = config["metadata"]["annotations"]["spec"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} has no metadata.annotations.spec") from None
    if not isinstance(text, str):
        raise ValueError(f"{path}: metadata.annotations.spec must be a JSON string")
    return parse_spec(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autotrack.cvat.label_spec",
        description="Print the CVAT label spec of a detector (for a Nuclio function.yaml), "
                    "or check function.yaml files against it.",
    )
    parser.add_argument("model", help="detector name or file: yolox-nano, yolo11n.pt, best.pt, ...")
    parser.add_argument("--type", choices=("auto", *SHAPE_TYPES), default="auto",
                        help="label type (default auto: mask for segmentation models, "
                             "else rectangle)")
    parser.add_argument("--format", choices=("json", "yaml"), default="json",
                        help="json: the list; yaml: the 'spec: |' block for function.yaml")
    parser.add_argument("--check", nargs="+", metavar="FUNCTION_YAML",
                        help="compare these function.yaml files with the model; exit 1 on mismatch")
    args = parser.parse_args(argv)

    from autotrack.detectors import load_detector
    from autotrack.errors import AutotrackError

    try:
        detector = load_detector(args.model)
        shape_type = detector_shape_type(detector) if args.type == "auto" else args.type
        spec = label_spec(detector.class_names, shape_type)
    except (AutotrackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.check:
        print(spec_yaml_block(spec) if args.format == "yaml" else spec_json(spec))
        return 0
    failed = False
    for path in args.check:
        try:
            problems = spec_problems(function_yaml_spec(path), detector.class_names, shape_type)
        except (OSError, ValueError) as exc:
            problems = [str(exc)]
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        if not problems:
            print(f"{path}: matches {args.model} ({len(spec)} {shape_type} labels)")
        failed = failed or bool(problems)
    if failed:
        print(f"regenerate with: python -m autotrack.cvat.label_spec {args.model} --format yaml",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
