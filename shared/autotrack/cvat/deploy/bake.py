"""Put a function's model into its image at build time:
``python -m autotrack.cvat.deploy.bake NAME``.

The build directives in serverless/*/nuclio/function*.yaml run it with
``AUTOTRACK_MODELS=/opt/nuclio/models``, and the function then runs with AUTOTRACK_OFFLINE=1.
A registry model (``yolox-nano``, ...) is downloaded into the first AUTOTRACK_MODELS folder unless
it is already there, and its sha256 is checked either way, so a file dropped into the function's
``models/`` folder is verified too. Any other name goes to :func:`load_detector`, which lets
ultralytics fetch its official checkpoints (``yolo11n.pt``) into the same folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.models import find_spec, model_dirs, resolve_model, sha256_of


def bake(name: str) -> Path:
    """The model file for `name`, fetched if need be and checked; ModelNotFoundError if not."""
    spec = find_spec(name)
    if spec is not None:
        path = resolve_model(name)
        actual = sha256_of(path)
        if actual != spec.sha256.strip().lower():
            raise ModelNotFoundError(
                f"{path} has sha256 {actual}, but {spec.name} must have {spec.sha256}; "
                "remove it and build again to download a verified copy"
            )
        return path
    from autotrack.detectors import load_detector

    load_detector(name)  # downloads official ultralytics checkpoints into model_dirs()[0]
    candidate = model_dirs()[0] / Path(name).name
    return candidate if candidate.is_file() else Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    if not names or any(n in ("-h", "--help") for n in names):
        print("usage: python -m autotrack.cvat.deploy.bake NAME [NAME ...]\n\n"
              "Fetch and verify model files into the first AUTOTRACK_MODELS folder.")
        return 0 if names else 2
    for name in names:
        try:
            print(f"{name}: {bake(name)}")
        except AutotrackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
