"""Read and write a task's or job's annotations through cvat-sdk, as plain JSON.

Reads keep the server's JSON as it came (a backup must hold everything, including fields
this cvat-sdk does not know); every body sent is first built into the cvat-sdk request model
with full type checking, so a malformed body fails here, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from autotrack.cvat.task.connection import DATA_TIMEOUT, CvatRequestError, Server

KINDS = ("task", "job")
ANNOTATION_LISTS = ("tags", "shapes", "tracks", "intervals")
CREATE, UPDATE, DELETE = "create", "update", "delete"


def _api(server: Server, kind: str) -> Any:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return server.api.tasks_api if kind == "task" else server.api.jobs_api


def _json_body(response: Any, what: str, url: str) -> Any:
    try:
        data = response.data
    finally:
        response.release_conn()
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise CvatRequestError(f"cannot {what}: {url} answered with something that is not "
                               "JSON") from None


def build_model(model_name: str, data: Any, what: str) -> Any:
    """``data`` as the cvat-sdk model ``model_name``, type-checked as the OpenAPI schema says."""
    from cvat_sdk import models
    from cvat_sdk.api_client import exceptions as api_exc
    from cvat_sdk.api_client.model_utils import validate_and_convert_types

    model = getattr(models, model_name)
    try:
        return validate_and_convert_types(data, (model,), [what], True, True)
    except (api_exc.OpenApiException, TypeError, ValueError) as exc:
        raise CvatRequestError(f"{what} does not fit CVAT's {model_name} schema: "
                               f"{' '.join(str(exc).split())[:300]}") from None


def get_annotations(server: Server, kind: str, target_id: int) -> dict[str, Any]:
    """The annotations of a task or job, as the server's JSON (checked against LabeledData)."""
    what = f"read the annotations of {kind} {target_id}"
    _, response = server.call(what, _api(server, kind).retrieve_annotations, target_id,
                              _parse_response=False, timeout=DATA_TIMEOUT)
    data = _json_body(response, what, server.url)
    if not isinstance(data, dict):
        raise CvatRequestError(f"cannot {what}: {server.url} answered {type(data).__name__}, "
                               "not an annotations object")
    build_model("LabeledData", data, f"the annotations of {kind} {target_id}")
    return data


def put_annotations(server: Server, kind: str, target_id: int, data: Mapping[str, Any]) -> None:
    """Replace all annotations of a task or job (``PUT .../annotations``)."""
    request = build_model("LabeledDataRequest", dict(data), "the annotations to restore")
    what = f"write the annotations of {kind} {target_id}"
    _, response = server.call(what, _api(server, kind).update_annotations, target_id,
                              labeled_data_request=request, _parse_response=False,
                              timeout=DATA_TIMEOUT)
    _json_body(response, what, server.url)


def patch_annotations(server: Server, kind: str, target_id: int, action: str,
                      data: Mapping[str, Any]) -> dict[str, Any] | None:
    """``PATCH .../annotations?action=...``; returns the server's JSON answer (None if empty)."""
    request = build_model("PatchedLabeledDataRequest", dict(data), f"the {action} request")
    verb = {CREATE: "add annotations to", UPDATE: "update annotations of",
            DELETE: "delete annotations of"}[action]
    what = f"{verb} {kind} {target_id}"
    _, response = server.call(what, _api(server, kind).partial_update_annotations,
                              action=action, id=target_id,
                              patched_labeled_data_request=request, _parse_response=False,
                              timeout=DATA_TIMEOUT)
    answer = _json_body(response, what, server.url)
    return answer if isinstance(answer, dict) else None


def as_track_request(track: Mapping[str, Any]) -> dict[str, Any]:
    """A track as read, trimmed to the fields a LabeledTrackRequest takes (recursively)."""
    from cvat_sdk import models

    def trim(value: Any, model: Any) -> Any:
        fields = model.attribute_map
        types = model.openapi_types
        out = {}
        for key, item in value.items():
            if key not in fields:
                continue
            kind = types[key][0]
            if isinstance(kind, list) and kind and hasattr(kind[0], "attribute_map"):
                item = [trim(x, kind[0]) for x in item]
            out[key] = item
        return out

    return trim(track, models.LabeledTrackRequest)


def _attribute_pairs(values: Sequence[Mapping[str, Any]] | None,
                     defaults: Mapping[int, str]) -> list[list[Any]]:
    """Attribute values that differ from the label's defaults, sorted.

    CVAT fills every attribute a label defines into what it returns, so a track sent without
    attributes comes back with the defaults; those must not count as an edit.
    """
    pairs = []
    for item in values or []:
        spec, value = int(item["spec_id"]), str(item["value"])
        if defaults.get(spec) != value:
            pairs.append([spec, value])
    return sorted(pairs)


def _shape_row(shape: Mapping[str, Any], defaults: Mapping[int, str]) -> list[Any]:
    return [int(shape["frame"]), str(shape["type"]), bool(shape.get("outside", False)),
            bool(shape.get("occluded", False)), int(shape.get("z_order") or 0),
            round(float(shape.get("rotation") or 0.0), 2),
            [round(float(p), 2) for p in shape.get("points") or []],
            _attribute_pairs(shape.get("attributes"), defaults)]


def fingerprint(item: Mapping[str, Any], attribute_defaults: Mapping[int, str]) -> str:
    """A digest of everything a person can change on a track or a shape in CVAT.

    Label, group, attributes, and (a track's every keyframe's) frame, type, flags, order,
    rotation and points (to 0.01 px). Ids are left out, so the same object reads the same
    after a restore that renumbers it; the id is checked separately.
    """
    payload: dict[str, Any] = {
        "label_id": int(item["label_id"]),
        "frame": int(item["frame"]),
        "group": int(item.get("group") or 0),
        "attributes": _attribute_pairs(item.get("attributes"), attribute_defaults),
        "elements": len(item.get("elements") or []),
    }
    if "shapes" in item:
        shapes = sorted(item.get("shapes") or [], key=lambda s: int(s["frame"]))
        payload["shapes"] = [_shape_row(s, attribute_defaults) for s in shapes]
    else:
        payload["shape"] = _shape_row({**item, "attributes": []}, attribute_defaults)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()



def without_ids(value: Any) -> Any:
    """A copy with every ``id`` removed: what CVAT accepts in a PUT or a create (it refuses
    preset ids: cvat-ai/cvat PR #9583)."""
    return _strip_ids(value)


def _strip_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_strip_ids(v) for v in value]
    return value


def canonical(annotations: Mapping[str, Any], *, ids: bool = True) -> dict[str, Any]:
    """Annotations in a fixed order for comparison; without ids when ``ids`` is False.

    Objects are ordered by id (or by content without ids); a track's shapes by frame.
    """
    out: dict[str, Any] = {}
    for key in ANNOTATION_LISTS:
        items = []
        for item in annotations.get(key) or []:
            item = dict(item)
            if "shapes" in item:
                item["shapes"] = sorted(item["shapes"], key=lambda s: int(s["frame"]))
            items.append(item if ids else _strip_ids(item))
        if ids:
            items.sort(key=lambda x: (x.get("id") is None, x.get("id") or 0))
        else:
            items.sort(key=lambda x: json.dumps(x, sort_keys=True))
        out[key] = items
    return out


def counts(annotations: Mapping[str, Any]) -> str:
    """``"3 shapes, 2 tracks, 0 tags"`` (and intervals when there are any)."""
    parts = [f"{len(annotations.get('shapes') or [])} shapes",
             f"{len(annotations.get('tracks') or [])} tracks",
             f"{len(annotations.get('tags') or [])} tags"]
    if annotations.get("intervals"):
        parts.append(f"{len(annotations['intervals'])} intervals")
    return ", ".join(parts)
