"""cvat-sdk auto-annotation functions (``DetectionFunction``, ``TrackingFunction``) that the
files in ``functions/`` expose to ``cvat-cli``."""
