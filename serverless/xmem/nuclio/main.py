"""Nuclio handler: XMem (Cheng & Schwing, ECCV 2022; MIT) as a CVAT tracker that follows
objects as masks.

Request checks, sessions, in-band states and CVAT's tracker format live in
autotrack.cvat.nuclio.mask_tracker (tested in tests/test_nuclio_masks.py), the model in
autotrack.vos.xmem. The checkpoint is baked in at build time (function.yaml).
"""

from autotrack.cvat.nuclio import mask_tracker


def init_context(context):
    mask_tracker.init_context(context, "xmem")


def handler(context, event):
    return mask_tracker.handle(context, event)
