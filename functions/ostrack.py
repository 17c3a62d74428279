"""OSTrack (official checkpoint, torch) as a cvat-sdk tracking function.

Register it with CVAT, then serve CVAT's interactive tracking requests from this machine:
`cvat-cli function create-native "OSTrack" --function-file functions/ostrack.py`, then
`cvat-cli function run-agent FUNCTION_ID --function-file functions/ostrack.py [-p NAME=TYPE:VALUE]`.

Weights are not downloaded: download OSTrack_ep0300.pth.tar (vitb_256_mae_ce_32x4_ep300) from
https://github.com/botaoye/OSTrack#evaluation and pass -p checkpoint=str:PATH or set
AUTOTRACK_OSTRACK_CHECKPOINT.

Parameters (`-p name=type:value`): checkpoint=str:PATH, preset=str:vitb_256_mae_ce_32x4_ep300
(the checkpoint's folder name; tiny-random is a test model with random weights),
device=str:cpu|cuda:0, min_score=float:0.2 (below it a shape is reported lost on that frame),
max_sessions=int:128 and session_ttl_s=float:900 (live templates kept; an evicted one is rebuilt
from the tracking state). Tracks rectangles only.
The logic lives in autotrack.cvat.sdk.ostrack and autotrack.sot.ostrack_sot.
"""

from autotrack.cvat.sdk.ostrack import create_ostrack as create

__all__ = ["create"]
