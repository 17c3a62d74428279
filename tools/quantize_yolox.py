"""Build the int8 YOLOX-Nano (``yolox-nano-int8``) into your models folder.

Run: python tools/quantize_yolox.py [--video VIDEO] [--output FILE]

Quantizes the float ``yolox-nano`` (resolved as ``autotrack`` resolves it: AUTOTRACK_MODELS
or the user cache) with static int8 quantization calibrated on every 16th frame of a video
(default: vtest.avi from the shared data), and writes it under the name the registry gives it
in the first models folder, beside the float model, which stays as it is. Prints its sha256
and whether it matches the registry's (it does with onnxruntime 1.32; another version may
round differently). Needs ``pip install "cvat-autotrack[quantize]"``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from autotrack.detectors.quantize import FLOAT_MODEL, INT8_MODEL, calibration_frames, quantize_yolox
from autotrack.models import BUILT, model_dirs, resolve_model, sha256_of

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    data = Path(os.environ.get("AUTOTRACK_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(data / "videos" / "vtest.avi"),
                        help="calibration video (default: the shared vtest.avi)")
    parser.add_argument("--output", help="file to write (default: the first models folder)")
    args = parser.parse_args(argv)
    spec = BUILT[INT8_MODEL]
    output = Path(args.output) if args.output else model_dirs()[0] / spec.filename
    built = quantize_yolox(resolve_model(FLOAT_MODEL), calibration_frames(args.video), output)
    digest = sha256_of(built)
    same = "matches the registry" if digest == spec.sha256 else \
        f"differs from the registry's {spec.sha256} (another onnxruntime or calibration video)"
    print(f"wrote {built} ({INT8_MODEL}); sha256 {digest} {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
