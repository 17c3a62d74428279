"""Nuclio handler: SAM2 (Meta's official package, Apache-2.0) as a CVAT interactor.

Request checks and CVAT's interactor request/response format live in
autotrack.cvat.nuclio.interactor (tested in tests/test_nuclio_masks.py), the model in
autotrack.vos.sam2. The checkpoint is baked in at build time (function.yaml).
"""

from autotrack.cvat.nuclio import interactor


def init_context(context):
    interactor.init_context(context)


def handler(context, event):
    return interactor.handle(context, event)
