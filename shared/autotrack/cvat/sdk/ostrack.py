"""OSTrack as a cvat-sdk auto-annotation *tracking* function (``functions/ostrack.py``).

The tracking function is :class:`autotrack.cvat.sdk.tracking.SotTrackingFunction` (spec,
preprocessing, states kept in the cvat-cli agent's worker, ``min_score`` as "lost") around
:class:`autotrack.sot.ostrack_sot.OSTrackSot` instead of an OpenCV tracker; an evicted session
is rebuilt from the in-band template as there.
"""

from __future__ import annotations

from autotrack.cvat.sdk.tracking import DEFAULT_MIN_SCORE, SotTrackingFunction
from autotrack.errors import AutotrackError
from autotrack.sot import SessionStore, load_sot
from autotrack.sot.session import DEFAULT_MAX_SESSIONS, DEFAULT_TTL_S


def create_ostrack(
    *,
    checkpoint: str = "",
    preset: str = "",
    device: str = "",
    min_score: float = DEFAULT_MIN_SCORE,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    session_ttl_s: float = DEFAULT_TTL_S,
) -> SotTrackingFunction:
    """``create`` of ``functions/ostrack.py`` (its parameters are the ``-p`` names). Empty
    ``checkpoint``/``preset``/``device`` fall back to ``AUTOTRACK_OSTRACK_CHECKPOINT``,
    ``AUTOTRACK_OSTRACK_PRESET`` (default vitb_256_mae_ce_32x4_ep300) and ``AUTOTRACK_DEVICE``
    (default cpu)."""
    try:
        store = SessionStore(ttl_s=float(session_ttl_s), max_sessions=int(max_sessions))
    except ValueError as exc:
        raise AutotrackError(str(exc)) from None
    tracker = load_sot("ostrack", store, checkpoint=checkpoint or None, preset=preset or None,
                       device=device or None)
    return SotTrackingFunction(tracker, min_score=min_score)
