"""VitTrack (OpenCV, ONNX weights from the model registry) as a cvat-sdk tracking function.

Register it with CVAT, then serve CVAT's interactive tracking requests from this machine:
`cvat-cli function create-native "VitTrack" --function-file functions/vittrack.py`, then
`cvat-cli function run-agent FUNCTION_ID --function-file functions/vittrack.py [-p NAME=TYPE:VALUE]`.

Parameters (`-p name=type:value`): min_score=float:0.2 (below it a shape is reported lost on
that frame), max_sessions=int:128 and session_ttl_s=float:900 (live trackers kept; an evicted
one is rebuilt from the tracking state). Tracks rectangles only.
The logic lives in autotrack.cvat.sdk.tracking.
"""

from autotrack.cvat.sdk.tracking import create_vittrack as create

__all__ = ["create"]
