"""Nuclio handler: SAM3 (Meta, SAM License; checkpoint supplied by the admin) as a CVAT
detector whose label names are text prompts: every "car" on the frame comes back as a mask.

Request checks, prompts and CVAT's response format live in autotrack.cvat.nuclio.sam3 (tested
in tests/test_nuclio_sam3.py). AUTOTRACK_SAM3_CHECKPOINT must name a mounted or baked-in
sam3.pt and AUTOTRACK_SAM3_LABELS the prompts, the same names as the spec in function.yaml.
"""

from pathlib import Path

from autotrack.cvat.nuclio import sam3


def init_context(context):
    sam3.init_context(context, function_yaml=Path(__file__).with_name("function.yaml"))


def handler(context, event):
    return sam3.handle(context, event)
