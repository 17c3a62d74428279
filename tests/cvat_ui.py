"""What CVAT does with our interactor and tracker answers, modelled from CVAT's own source (read
through CVAT 2.64's server and cvat-ui 2.64, and the UIs before 2.60), so that the tests can
check what a user sees without a CVAT server. Where CVAT fails, the model raises
:class:`UIError` (the UI's sticky error popup) or :class:`ValidationError` (the lambda
manager's 400).

Interactor (AI Tools -> Interactors):

- server, ``cvat/apps/lambda_manager/views.py`` ``LambdaFunction.invoke``: sends ``image``,
  ``pos_points``, ``neg_points``, ``obj_bbox``; the answer goes back to the UI untouched.
- UI before 2.60, ``cvat-ui/src/components/annotation-page/standard-workspace/
  controls-side-bar/tools-control.tsx`` ``runInteractionRequest``: :func:`interactor_pre_260`.
- UI 2.60+, ``cvat-core/src/lambda-manager.ts`` ``call()`` (PR #10329) wraps a ``mask`` answer
  as one mask shape placed at the frame's top-left corner, ignoring ``bounds``, ``points`` and
  ``score``; the ``shapes`` form is read only without ``mask``: :func:`interactor_260`.

Tracker (AI Tools -> Trackers):

- server, ``views.py``: ``LambdaFunction.__init__`` reads the ``supported_shape_types``
  annotation (:func:`supported_shape_types`), ``to_dict`` lists it (``or ["rectangle"]``);
  ``invoke``'s ``prepare_shape`` checks and shapes the request (:func:`tracker_request`) and
  the answer is wrapped and its states signed (:func:`tracker_answer`). Views.py before
  PR #9548 passes shapes and states through unchanged (``newest=False``).
- UI, ``tools-control.tsx``: ``onTracking`` makes rectangle tracks only, ``getSupportedTrackers``
  lists trackers whose ``supported_shape_types`` has rectangle (:func:`ui_lists_tracker`),
  ``checkTrackedStates`` maps every answer through ``trackedRectangleMapper`` (min/max of the
  points) and sets it as the object's points (:func:`ui_tracked_boxes`); one failing entry
  fails the whole batch ("Tracking error occurred").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

RECTANGLE = "rectangle"


class UIError(Exception):
    """The UI's catch: a sticky "Interaction error occurred" / "Tracking error occurred"."""


class ValidationError(Exception):
    """The lambda manager's ``ValidationError``: the UI gets a 400."""


# --- cvat-core helpers ----------------------------------------------------------------------


def mask2rle(flat: Sequence[int]) -> list[int]:
    """cvat-core ``object-utils.ts`` ``mask2Rle``: run lengths of equal values, the first a run
    of zeros (0 long when the first pixel is set); ``[]`` for no pixels."""
    values = np.asarray(flat)
    if not values.size:
        return []
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [values.size]])).tolist()
    return ([0] if values[0] > 0 else []) + runs


def rle2mask(rle: Sequence[float], height: int, width: int) -> np.ndarray:
    """CVAT's mask points (run lengths over the box ``[..., left, top, right, bottom]``, box
    corners inclusive) on an ``height`` x ``width`` frame. No runs is an empty mask; runs that
    do not cover the box, or a box off the frame, raise (CVAT would draw garbage or a mask
    outside the frame)."""
    if len(rle) < 4:
        raise UIError(f"a mask needs its box: {len(rle)} numbers")
    *runs, left, top, right, bottom = (int(v) for v in rle)
    frame = np.zeros((height, width), bool)
    if not runs or not sum(runs):
        return frame
    box_w, box_h = right - left + 1, bottom - top + 1
    if box_w <= 0 or box_h <= 0 or sum(runs) != box_w * box_h:
        raise UIError(f"mask runs cover {sum(runs)} pixels, its box [{left}, {top}, {right}, "
                      f"{bottom}] has {max(box_w, 0) * max(box_h, 0)}")
    if left < 0 or top < 0 or right >= width or bottom >= height:
        raise UIError(f"mask box [{left}, {top}, {right}, {bottom}] is off the {width}x{height} "
                      "frame")
    values = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    frame[top:bottom + 1, left:right + 1] = values.reshape(box_h, box_w)
    return frame


def _rows(mask: object) -> list[list[int]]:
    """``mask`` as the UIs index it (``mask[0].length``, ``mask.flat()``)."""
    if not isinstance(mask, list) or not mask or not isinstance(mask[0], list):
        raise UIError("TypeError: Cannot read properties of undefined (reading 'length')")
    if any(not isinstance(row, list) or len(row) != len(mask[0]) for row in mask):
        raise UIError("mask rows of different lengths")
    if any(v not in (0, 1) for row in mask for v in row):  # ours: we promise 0/1
        raise UIError("mask values other than 0 and 1")
    return mask


# --- interactor -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """What the UI draws from one interactor answer: the mask in frame pixels, and (UIs before
    2.60) the outline it offers for "convert masks to polygons"."""

    mask: np.ndarray
    polygon: list[list[float]]


def _points_from_mask(rows: list[list[int]], left: float, top: float) -> list[list[float]]:
    """tools-control.tsx ``receivePointsFromMask``: OpenCV's contours of the mask, shifted by
    ``left``/``top``; ``polygons[0].reduce`` fails when there is none."""
    contours, _ = cv2.findContours(np.asarray(rows, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise UIError("TypeError: Cannot read properties of undefined (reading 'reduce')")
    largest = max(contours, key=cv2.contourArea).reshape(-1, 2)
    return [[float(x + left), float(y + top)] for x, y in largest]


def interactor_pre_260(response: object, height: int, width: int) -> Drawn | None:
    """tools-control.tsx ``runInteractionRequest`` before CVAT 2.60: ``points`` absent ->
    ``receivePointsFromMask(mask, bounds[0], bounds[1])``; ``rle = mask2Rle(mask.flat())``
    then ``bounds`` (or ``[0, 0, w - 1, h - 1]``) appended; nothing is drawn when there are no
    points. None: nothing drawn."""
    if not isinstance(response, dict) or response.get("mask") is None:
        raise UIError("TypeError: Cannot read properties of undefined (reading 'flat')")
    rows = _rows(response["mask"])
    bounds = response.get("bounds")
    points = response.get("points")
    if points is None:  # `response.mask && !response.points` ([] is truthy in JS)
        left, top = (bounds[0], bounds[1]) if bounds else (0, 0)
        points = _points_from_mask(rows, left, top)
    rle = mask2rle([v for row in rows for v in row])
    rle += list(bounds) if bounds else [0, 0, len(rows[0]) - 1, len(rows) - 1]
    if not points:  # lastestApproximatedPoints is empty: no intermediate shape
        return None
    return Drawn(rle2mask(rle, height, width), [list(map(float, p)) for p in points])


def interactor_260(response: object, height: int, width: int) -> list[Drawn]:
    """cvat-core lambda-manager.ts ``call()`` from CVAT 2.60 (PR #10329), then the UI: a
    ``mask`` answer becomes one mask shape, ``rle = mask2Rle(mask.flat())`` with
    ``[0, 0, maskWidth - 1, maskHeight - 1]`` appended (``[0, 0, 0, 0]`` for no runs), whatever
    ``bounds``, ``points`` or ``score`` say; without ``mask``, the ``shapes`` list (items of
    type mask). Empty masks are dropped (``polygonPoints.length < 3 -> continue``)."""
    if not isinstance(response, dict):
        raise UIError("the interactor answered no object")
    if "mask" in response:
        rows = _rows(response["mask"])
        rle = mask2rle([v for row in rows for v in row])
        rle += [0, 0, len(rows[0]) - 1, len(rows) - 1] if rle else [0, 0, 0, 0]
        shapes = [{"type": "mask", "points": rle, "attributes": []}]
    elif isinstance(response.get("shapes"), list):
        shapes = response["shapes"]
    else:
        raise UIError("the interactor answered neither 'mask' nor 'shapes'")
    drawn = []
    for shape in shapes:
        if shape.get("type", "mask") != "mask":
            continue
        mask = rle2mask(shape["points"], height, width)
        if mask.any():
            drawn.append(Drawn(mask, []))
    return drawn


UI_VERSIONS = {"pre-2.60": interactor_pre_260, "2.60+": interactor_260}


def interactor_masks(response: object, height: int, width: int) -> dict[str, np.ndarray | None]:
    """The mask each UI version draws (None: nothing drawn); raises where a UI fails."""
    before = interactor_pre_260(response, height, width)
    after = interactor_260(response, height, width)
    if len(after) > 1:
        raise UIError("one interactor answer drew several masks")
    return {"pre-2.60": None if before is None else before.mask,
            "2.60+": after[0].mask if after else None}


# --- tracker --------------------------------------------------------------------------------


def supported_shape_types(annotations: Mapping[str, str]) -> list[str] | None:
    """views.py ``LambdaFunction.__init__``: the comma-separated annotation, None when absent
    (rectangles, legacy bare-points interface); present but empty is refused."""
    if "supported_shape_types" not in annotations:
        return None
    types = [t.strip() for t in annotations["supported_shape_types"].split(",") if t.strip()]
    if not types:
        raise ValidationError("lambda function has no supported shape types")
    return types


def ui_lists_tracker(annotations: Mapping[str, str]) -> bool:
    """``to_dict``'s ``supported_shape_types or ["rectangle"]``, kept by the UI's
    ``getSupportedTrackers`` when it has rectangle (the UI tracks rectangles only)."""
    return annotations.get("type") == "tracker" and \
        RECTANGLE in (supported_shape_types(annotations) or [RECTANGLE])


def _sign(state: object) -> str:
    """views.py signs ``json.dumps(state, separators=(",", ":"))`` with a TimestampSigner; the
    signature is left out here: the UI stores the text and sends it back."""
    return json.dumps(state, separators=(",", ":"))


def tracker_request(image: str, declared: list[str] | None, *,
                    shapes: Sequence[dict] | None = None, states: Sequence[str] | None = None,
                    newest: bool = True) -> dict:
    """What the function gets for the UI's tracker call. The UI sends ``shapes`` (CVAT shape
    objects ``{"type", "points"}``) to start and ``states`` (the signed texts it kept) to
    continue. Newest views.py ``invoke``: ``prepare_shape`` refuses a type outside
    ``declared or ["rectangle"]`` (400) and sends bare ``points`` when nothing is declared;
    continuing sends ``shapes = [None] * len(states)`` (PR #9548). Older: shapes as the UI
    sent them (bare points), states passed on."""
    if not newest:
        return {"image": image, "shapes": [s["points"] for s in shapes or []] or
                [None] * len(states or []), "states": list(states or [])}

    def prepare_shape(shape: dict | None) -> object:
        if shape is None:
            return None
        if shape["type"] not in (declared or [RECTANGLE]):
            raise ValidationError(f"This function does not support shapes of type "
                                  f"{shape['type']!r}")
        return shape["points"] if declared is None else shape

    if states is None:
        items, loaded = list(shapes or []), []
    else:
        items, loaded = [None] * len(states), [json.loads(s) for s in states]
    return {"image": image, "shapes": [prepare_shape(s) for s in items], "states": loaded}


def tracker_answer(response: dict, declared: list[str] | None, *, newest: bool = True) -> dict:
    """views.py after ``gateway.invoke``: without a declaration each entry of ``shapes``
    becomes ``None`` or ``{"type": "rectangle", "points": points}``; every state is signed.
    Older views.py: the answer as the function gave it."""
    if not newest:
        return response
    response = dict(response)
    if "shapes" in response and not declared:
        response["shapes"] = [None if points is None else {"type": RECTANGLE, "points": points}
                              for points in response["shapes"]]
    response["states"] = [_sign(state) for state in response["states"]]
    return response


def _rectangle(points: object) -> list[float]:
    """tools-control.tsx ``trackedRectangleMapper``: ``points.reduce`` into the min and max of
    the xs and ys; a box with no area is no rectangle."""
    if points is None:
        raise UIError("TypeError: Cannot read properties of undefined (reading 'reduce')")
    if not isinstance(points, list) or len(points) < 4 or len(points) % 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)
            for v in points):
        raise UIError(f"not a rectangle's points: {points!r}")
    xs, ys = points[0::2], points[1::2]
    box = [min(xs), min(ys), max(xs), max(ys)]
    if not (box[2] > box[0] and box[3] > box[1]):
        raise UIError(f"invalid box {box}")
    return box


def ui_tracked_boxes(response: dict, count: int, *, newest: bool = True) -> list[list[float]]:
    """tools-control.tsx ``checkTrackedStates``: ``response.shapes.map(trackedRectangleMapper)``,
    each set as its object's points, ``response.states[i]`` kept for the next frame. Newest UI:
    shape objects (``shape.points``); the 2024 UI: bare points (``trackedRectangleMapper(shape:
    number[])``)."""
    shapes, states = response.get("shapes"), response.get("states")
    if not isinstance(shapes, list) or not isinstance(states, list):
        raise UIError("the tracker answered no 'shapes' and 'states' lists")
    if len(shapes) != count or len(states) != count:
        raise UIError(f"{len(shapes)} shapes and {len(states)} states for {count} objects")
    if newest:
        return [_rectangle(_shape_points(shape)) for shape in shapes]
    return [_rectangle(_not_null(shape)) for shape in shapes]


def _not_null(value: object) -> object:
    if value is None:
        raise UIError("TypeError: Cannot read properties of null (reading 'reduce')")
    return value


def _shape_points(shape: object) -> object:
    """``shape.points`` in JavaScript: null fails, anything but an object has none."""
    if shape is None:
        raise UIError("TypeError: Cannot read properties of null (reading 'points')")
    return shape.get("points") if isinstance(shape, dict) else None


def track_through_cvat(call: Callable[[dict], dict], images: Sequence[str],
                       boxes: list[list[float]], annotations: Mapping[str, str], *,
                       newest: bool = True) -> list[list[list[float]]]:
    """The UI starting ``boxes`` (rectangles) on ``images[0]`` and following them on the other
    images, every call through the lambda manager both ways; ``call`` is the function (request
    body -> JSON answer). ``checkTrackedStates`` starts objects with a call on ``frame - 1``
    with their rectangles and no states, then follows with states (the old UI with the
    current rectangles too). The boxes every answer gives, the start's included (the old UI
    reads only the states of that one; the model checks its shapes anyway)."""
    if not ui_lists_tracker(annotations):
        raise UIError("the UI does not list this tracker")
    declared = supported_shape_types(annotations)
    states: list[str] | None = None
    shapes: list[dict] | None = [{"type": RECTANGLE, "points": box} for box in boxes]
    out = []
    for image in images:
        request = tracker_request(image, declared, shapes=shapes, states=states, newest=newest)
        answer = tracker_answer(call(request), declared, newest=newest)
        out.append(ui_tracked_boxes(answer, len(boxes), newest=newest))
        states, shapes = answer["states"], None
        if not newest:  # the old UI sent the previous boxes with the states
            shapes = [{"type": RECTANGLE, "points": box} for box in out[-1]]
    return out
