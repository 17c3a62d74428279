"""Nuclio handler: OSTrack (torch, official checkpoint supplied by the admin) as a CVAT
single-object tracker.

Request checks, the session store and CVAT's tracker request/response format live in
autotrack.cvat.nuclio.tracker, the model in autotrack.sot.ostrack_sot (tested in
tests/test_ostrack_doors.py). The checkpoint is not downloaded: AUTOTRACK_OSTRACK_CHECKPOINT
must name a mounted or baked-in OSTrack_ep0300.pth.tar (see function.yaml).
"""

from autotrack.cvat.nuclio import tracker


def init_context(context):
    tracker.init_context(context, "ostrack")


def handler(context, event):
    return tracker.handle(context, event)
