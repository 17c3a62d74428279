"""Nuclio handler: CVAT's "reid" function, which joins the rectangles of consecutive frames into
tracks by person Re-ID embeddings (OpenVINO person-reidentification-retail-0248, Apache-2.0).

Request checks, matching and CVAT's response format live in autotrack.cvat.nuclio.reid (tested
in tests/test_nuclio_reid.py). The model is baked into the image at build time
(function.yaml); AUTOTRACK_REID_MODEL may name another Re-ID model.
"""

from autotrack.cvat.nuclio import reid

MODEL = reid.EmbedderFromEnv("AUTOTRACK_REID_MODEL", "person-reid-0248")


def init_context(context):
    reid.init_context(context, MODEL)


def handler(context, event):
    return reid.handle(context, event)
