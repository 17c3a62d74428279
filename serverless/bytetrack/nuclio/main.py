"""Nuclio handler: a detector (YOLOX-Nano by default) and ByteTrack's association as a CVAT
tracker, following the rectangles a person drew (AI Tools -> Trackers).

Request checks, the tracker and CVAT's tracker format live in autotrack.cvat.nuclio.bytetrack
(tested in tests/test_nuclio_bytetrack.py). AUTOTRACK_BYTETRACK_DETECTOR names the detector
(a registry name or a model file); the default model is baked into the image (function.yaml).
"""

from autotrack.cvat.nuclio import bytetrack

MODEL = bytetrack.DetectorFromEnv("AUTOTRACK_BYTETRACK_DETECTOR", "yolox-nano")


def init_context(context):
    bytetrack.init_context(context, MODEL)


def handler(context, event):
    return bytetrack.handle(context, event)
