"""Nuclio handler: SAM2 (Meta's official package, Apache-2.0) as a CVAT tracker that follows
objects as masks.

Request checks, sessions, in-band states and CVAT's tracker format live in
autotrack.cvat.nuclio.mask_tracker (tested in tests/test_nuclio_masks.py), the model in
autotrack.vos.sam2. The checkpoint is baked in at build time (function.yaml).
"""

from autotrack.cvat.nuclio import mask_tracker


def init_context(context):
    mask_tracker.init_context(context, "sam2")


def handler(context, event):
    return mask_tracker.handle(context, event)
