"""Single-object trackers (issue 5): one interface, OpenCV's VitTrack and NanoTrack.

``load_sot("vittrack")`` returns a tracker; ``state = t.init(frame, box)`` then
``box, score, state = t.update(frame, state)``. See :mod:`autotrack.sot.base` for the state
that travels through CVAT and :mod:`autotrack.sot.session` for the live trackers kept in the
worker.
"""

from autotrack.sot.base import MAX_SOT_STATE_BYTES, SingleObjectTracker, SotState, check_box
from autotrack.sot.opencv import OpenCVTracker
from autotrack.sot.session import SessionStore

SOT_KINDS = OpenCVTracker.KINDS


def load_sot(kind: str = "vittrack", store: SessionStore | None = None, **options: object):
    """A SOT by name: ``vittrack`` or ``nanotrack`` (OpenCV, weights from the registry, no
    options), or ``ostrack`` (torch; options ``checkpoint``, ``preset``, ``device``, ``seed``
    of :class:`autotrack.sot.ostrack_sot.OSTrackSot`, imported only when asked for)."""
    if kind == "ostrack":
        from autotrack.sot.ostrack_sot import OSTrackSot

        return OSTrackSot(store=store, **options)
    if options:
        raise TypeError(f"load_sot({kind!r}) takes no options, got {sorted(options)}")
    return OpenCVTracker(kind, store)


__all__ = ["MAX_SOT_STATE_BYTES", "OpenCVTracker", "SOT_KINDS", "SessionStore",
           "SingleObjectTracker", "SotState", "check_box", "load_sot"]
