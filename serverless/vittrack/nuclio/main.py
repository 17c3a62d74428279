"""Nuclio handler: VitTrack (OpenCV, Apache-2.0) as a CVAT single-object tracker.

Request checks, the session store and CVAT's tracker request/response format live in
autotrack.cvat.nuclio.tracker (tested in tests/test_nuclio_tracker.py). The ONNX weights are
baked into the image at build time (function.yaml).
"""

import cv2

from autotrack.cvat.nuclio import tracker

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def init_context(context):
    tracker.init_context(context, "vittrack")


def handler(context, event):
    return tracker.handle(context, event)
