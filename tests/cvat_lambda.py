"""A model of what CVAT does with a detector function's answer, for tests: what CVAT stores.

Like ``tests/cvat_xml.py`` for CVAT's XML importer, it follows CVAT's source (cvat-ai/cvat, read
at the commits named; CVAT is not run) and refuses what CVAT refuses, fails on, or stores in a
form it cannot decode later:

* Transport: ``cvat/apps/lambda_manager/views.py`` ``LambdaGateway._http`` /
  ``_invoke_directly`` post the request with ``requests`` (``session.request(...,
  timeout=NUCLIO_TIMEOUT, json=data)``, header ``X-Nuclio-Invoke-Timeout: {NUCLIO_TIMEOUT}s``),
  then ``reply.raise_for_status()`` and ``reply.json()``. ``requests`` sends
  ``Accept-Encoding: gzip, deflate`` and decodes a gzip body before ``.json()``
  (:func:`read_reply`). ``NUCLIO_TIMEOUT = settings.NUCLIO["DEFAULT_TIMEOUT"]``, which
  ``cvat/settings/base.py`` reads as ``int(os.getenv("CVAT_NUCLIO_DEFAULT_TIMEOUT", 120))``
  (:data:`NUCLIO_DEFAULT_TIMEOUT_S`); past it ``requests.Timeout`` becomes a 504, so a
  function's ``eventTimeout`` above it buys nothing.
* Auto-annotation (views.py at 024777ef / e4c12a27): ``LambdaJob._call_detector`` calls
  ``function.invoke(..., converter=DetectionResultConverter(db_task))``; the payload is only
  ``{"image", "threshold"}`` (plus ``mapping`` handling on CVAT's side): ``conv_mask_to_poly``
  stays in CVAT. ``DetectionResultConverter._parse_anno`` (:func:`parse_anno`) builds the
  shape with ``"points": anno.get("mask", []) if anno["type"] == "mask" else
  anno.get("points", [])``; a ``mask`` with ``"points"`` becomes that polygon when the user
  ticked "convert masks to polygons"; otherwise ``[xtl, ytl, xbr, ybr] = shape["points"][-4:]``,
  ``cut_points = shape["points"][:-4]``, ``rle = mask_tools.mask_to_rle(np.array(cut_points)[:,
  np.newaxis])["counts"].tolist()`` (older: without ``[:, np.newaxis]``, the same runs),
  ``rle.extend([xtl, ytl, xbr, ybr])``. So ``mask`` is the 0/1 bitmap CROPPED to its inclusive
  box, row by row, then the box, as CVAT's own functions' ``to_cvat_mask`` writes it
  (``mask[ytl:ybr + 1, xtl:xbr + 1].flat[:].tolist()`` + box, e.g.
  ``serverless/openvino/omz/intel/semantic-segmentation-adas-0001/nuclio/model_handler.py``).
  No more compact form is read for masks (run lengths in ``points`` are ignored for a mask,
  used as a polygon only with conv_mask_to_poly). ``confidence`` is never read: the stored
  shape has no score (CVAT's UI shows 1).
* ``datumaro/util/mask_tools.py`` (cvat-ai/datumaro 02ca61d8) ``mask_to_rle``
  (:func:`datumaro_mask_to_rle`): runs of the Fortran-order ravel, background first. It knows
  nothing of the box: runs that do not cover the box are stored and fail (or show garbage) when
  CVAT decodes them (``MaskConverter.cvat_rle_to_dm_rle``, :func:`decode_stored_mask`, modelled
  in ``tests/cvat_xml.py``). This model refuses them at once, as it refuses bools (numpy's
  ``diff`` refuses boolean arrays) and values other than 0/1.
* The UI's one-frame detector path (2024 cvat-ui
  ``cvat-ui/src/components/annotation-page/standard-workspace/controls-side-bar/
  tools-control.tsx`` at 298b6166, :func:`ui_detector_states`): a ``mask`` with ``points`` and
  ``convMaskToPoly`` becomes a polygon; a ``mask`` with ``mask`` gives ``const [left, top,
  right, bottom] = data.mask.splice(-4); const rle = core.utils.mask2Rle(data.mask);
  rle.push(left, top, right, bottom)``; a ``mask`` without ``mask`` is dropped (``null``).
  ``mask2Rle`` (``cvat-core/src/object-utils.ts``, :func:`ui_mask2rle`): ``[0, 0, 0, 1]`` ->
  ``[3, 1]``, ``[1, 1, 0, 0]`` -> ``[0, 2, 2]``. Newer UIs go through the server's converter.

Simplified: no attributes, groups, skeletons or tags beyond what a detector of ours sends.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence

import numpy as np

from cvat_xml import CvatImportError, decode_mask

NUCLIO_DEFAULT_TIMEOUT_S = 120  # cvat/settings/base.py: CVAT_NUCLIO_DEFAULT_TIMEOUT, default 120
SHAPE_TYPES = {"rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask",
               "skeleton"}  # cvat/apps/engine/models.py ShapeType


class CvatLambdaError(CvatImportError):
    """CVAT refuses the answer, fails on it, or stores a mask it cannot decode later."""


def read_reply(body: bytes | str, headers: Mapping[str, str] | None = None) -> object:
    """``reply.json()`` of a ``requests`` reply: the body, gunzipped when the response says
    ``Content-Encoding: gzip`` (urllib3 decodes it for ``requests``)."""
    headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if headers.get("content-encoding", "").strip().lower() == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def datumaro_mask_to_rle(bits: Sequence[int]) -> list[int]:
    """``mask_to_rle(np.array(bits)[:, np.newaxis])["counts"].tolist()``, after checking the
    bits are what CVAT can encode (ints 0/1, at least one)."""
    array = np.asarray(bits)
    if array.ndim != 1 or len(array) == 0:
        raise CvatLambdaError("a mask needs at least one pixel before its box: "
                              "mask_to_rle fails (IndexError) on an empty one")
    if array.dtype.kind not in "iu":
        raise CvatLambdaError(f"mask values are {array.dtype} (not ints): numpy's diff in "
                              "mask_to_rle refuses booleans, floats give garbage runs")
    if not np.isin(array, (0, 1)).all():
        raise CvatLambdaError("mask values must be 0 or 1: other values split runs")
    column = array[:, np.newaxis]
    bounded = column.ravel(order="F")
    difs = np.diff(bounded, prepend=[1 - bounded[0]], append=[1 - bounded[-1]])
    (counts,) = np.where(difs != 0)
    counts = np.diff(counts, prepend=[0]) if bounded[0] != 0 else np.diff(counts)
    return counts.tolist()


def _mask_box(points: Sequence) -> tuple[list, list[int]]:
    if len(points) < 5:
        raise CvatLambdaError(f"a mask of {len(points)} numbers has no pixels before its box: "
                              "CVAT's unpacking of the last four fails")
    cut, box = list(points[:-4]), points[-4:]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
        raise CvatLambdaError(f"mask box {box} must be integers")
    xtl, ytl, xbr, ybr = box
    if not (xtl <= xbr and ytl <= ybr):
        raise CvatLambdaError(f"mask box {box} is not [xtl, ytl, xbr, ybr]")
    area = (xbr - xtl + 1) * (ybr - ytl + 1)
    if len(cut) != area:
        raise CvatLambdaError(
            f"mask has {len(cut)} pixels before its box {box}, which holds {area}: CVAT stores "
            "runs that do not cover the box, and fails decoding them (a full-frame bitmap "
            "instead of the box's own is this mistake)")
    return cut, [xtl, ytl, xbr, ybr]


def parse_anno(anno: Mapping, labels: Mapping[str, int], *, conv_mask_to_poly: bool = False,
               frame: int = 0) -> dict | None:
    """``DetectionResultConverter._parse_anno``: the shape CVAT stores for one answer item,
    None for a label the task lacks."""
    label_id = labels.get(anno["label"])
    if label_id is None:
        return None
    kind = anno["type"]
    if kind not in SHAPE_TYPES:
        raise CvatLambdaError(f"shape type {kind!r}: LabeledDataSerializer refuses it")
    shape = {
        "frame": frame, "label_id": label_id, "source": "auto", "attributes": [],
        "group": anno.get("group_id"), "type": kind, "occluded": False,
        "outside": anno.get("outside", False),
        "points": anno.get("mask", []) if kind == "mask" else anno.get("points", []),
        "z_order": 0,
    }  # no "confidence": CVAT never reads it
    if kind in ("rectangle", "ellipse"):
        shape["rotation"] = anno.get("rotation", 0)
    if kind == "mask" and "points" in anno and conv_mask_to_poly:
        shape["type"] = "polygon"
        shape["points"] = anno["points"]
    elif kind == "mask":
        cut, box = _mask_box(shape["points"])
        shape["points"] = datumaro_mask_to_rle(cut) + box
    if shape["type"] == "polygon" and (len(shape["points"]) < 6 or len(shape["points"]) % 2):
        raise CvatLambdaError(f"a polygon of {len(shape['points'])} numbers")
    return shape


def convert(annotations: Sequence[Mapping], labels: Mapping[str, int], *,
            conv_mask_to_poly: bool = False, frame: int = 0) -> list[dict]:
    """``DetectionResultConverter.convert``: the stored shapes of one frame's answer."""
    if not isinstance(annotations, list):
        raise CvatLambdaError(f"the answer is a {type(annotations).__name__}, not a list: "
                              "_call_detector iterates over it")
    parsed = (parse_anno(anno, labels, conv_mask_to_poly=conv_mask_to_poly, frame=frame)
              for anno in annotations)
    return [shape for shape in parsed if shape is not None]


def ui_mask2rle(mask: Sequence[int]) -> list[int]:
    """cvat-core ``mask2Rle``: run lengths, background first (JS ``val > 0`` for the first
    value, ``===`` between neighbours)."""
    array = np.asarray(mask)
    if len(array) == 0:
        return []
    flips = np.flatnonzero(array[1:] != array[:-1]) + 1
    runs = np.diff(np.concatenate([[0], flips, [len(array)]])).tolist()
    return [0, *runs] if array[0] > 0 else runs


def ui_detector_states(annotations: Sequence[Mapping], *,
                       conv_mask_to_poly: bool = False) -> list[dict]:
    """The 2024 UI's detector path: ``{"label", "type", "points"}`` per ObjectState made."""
    states = []
    for data in annotations:
        if data["type"] == "mask" and data.get("points") and conv_mask_to_poly:
            states.append({"label": data["label"], "type": "polygon",
                           "points": list(data["points"])})
        elif data["type"] == "mask":
            if not data.get("mask"):
                continue
            cut, box = _mask_box(data["mask"])
            states.append({"label": data["label"], "type": "mask",
                           "points": ui_mask2rle(cut) + box})
        else:
            states.append({"label": data["label"], "type": data["type"],
                           "points": list(data.get("points", []))})
    return states


def decode_stored_mask(points: Sequence[int], height: int, width: int) -> np.ndarray:
    """The full-frame bool mask CVAT reads back from a stored mask shape
    (``MaskConverter.cvat_rle_to_dm_rle``, as ``tests/cvat_xml.py`` models it)."""
    return decode_mask(points, height, width)
