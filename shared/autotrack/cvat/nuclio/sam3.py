"""Nuclio handler core for SAM3 as a CVAT detector: the function's label names are its prompts.

CVAT offers a detector's labels from ``metadata.annotations.spec`` in function.yaml and maps
them to a task's labels by name (cvat/apps/lambda_manager/views.py); it sends the function only
``{"image", "threshold"}`` and drops, on its side, shapes whose label the task lacks. So the
prompt vocabulary is fixed at deploy time: ``AUTOTRACK_SAM3_LABELS`` (comma-separated, default
:data:`DEFAULT_LABELS`) and the spec must name the same labels, as ``mask`` shapes (CVAT maps
them to polygon labels too). Every label costs one pass of SAM3's grounding heads per frame, so
a short list that matches your tasks is faster. A caller that knows the task may send
``"mapping"`` (CVAT's own shape: ``{model label: {"name": task label, ...}}``) to run only the
mapped prompts; a name the function does not have is refused with 400.

Everything else (request checks, limits, answers, CVAT's mask format) is
:mod:`autotrack.cvat.nuclio.detector`'s: each mask is cut to its own box, masks are answered
within ``AUTOTRACK_MAX_MASK_PIXELS``, and a large answer is gzip-compressed for CVAT
(:mod:`autotrack.cvat.nuclio.base`). Like the other mask functions it refuses frames over 4K
UHD (3840x2160 pixels, ``AUTOTRACK_MAX_IMAGE_PIXELS``): SAM3 works at 1008 px, and every mask
costs the frame's pixels. CVAT never reads an answer's
``confidence``, so the masks it stores have no score (its UI shows 1.0): SAM3's confidence
only decides, through the threshold, which masks are sent. Settings beyond its
``AUTOTRACK_*`` ones:

================================  ==============================================================
``AUTOTRACK_SAM3_CHECKPOINT``     Meta's ``sam3.pt`` (mounted or baked in; see function.yaml)
``AUTOTRACK_SAM3_BPE``            ``bpe_simple_vocab_16e6.txt.gz`` if not beside the checkpoint
``AUTOTRACK_SAM3_LABELS``         the prompts, comma-separated; must match the spec
``AUTOTRACK_SAM3_CONFIG``         ``official`` (default); ``tiny`` only for tests
``AUTOTRACK_SAM3_IMAGE_SIZE``     input side, default the config's (1008)
================================  ==============================================================

``python -m autotrack.cvat.nuclio.sam3 "car,person"`` prints the spec block for function.yaml.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotrack.cvat.label_spec import (
    function_yaml_spec,
    label_spec,
    spec_problems,
    spec_yaml_block,
)
from autotrack.cvat.nuclio.base import ModelFromEnv, handle_loaded, log, one_line
from autotrack.cvat.nuclio.detector import (
    DetectorFunction,
    FunctionSettings,
    detections_to_cvat,
    left_out_note,
)
from autotrack.cvat.nuclio.request import (
    MASK_MAX_IMAGE_PIXELS,
    DetectorRequest,
    RequestError,
    RequestLimits,
    parse_detector_request,
    parse_json_object,
)

LABELS_ENV = "AUTOTRACK_SAM3_LABELS"
CONFIG_ENV = "AUTOTRACK_SAM3_CONFIG"
IMAGE_SIZE_ENV = "AUTOTRACK_SAM3_IMAGE_SIZE"
DEFAULT_LABELS = ("person", "car", "truck", "bus", "bicycle", "motorcycle", "dog", "cat",
                  "bird", "horse", "boat", "traffic light")
MAX_MAPPING_ENTRIES = 1000

__all__ = ["DEFAULT_LABELS", "LABELS_ENV", "Sam3FromEnv", "Sam3Function", "Sam3Request",
           "handle", "init_context", "labels_from_env"]


@dataclass(frozen=True)
class Sam3Request:
    """A checked detector request and the prompts it asks for (indices into the labels)."""

    detector: DetectorRequest
    prompt_ids: tuple[int, ...]
    ignored_fields: tuple[str, ...] = field(default=())


class Sam3FromEnv(ModelFromEnv):
    """SAM3 factory for main.py: the checkpoint named by ``AUTOTRACK_SAM3_CHECKPOINT`` (no
    default: Meta's weights are not redistributed), prompts from ``AUTOTRACK_SAM3_LABELS``."""

    def __init__(self) -> None:
        super().__init__("AUTOTRACK_SAM3_CHECKPOINT", "")

    def __call__(self) -> object:
        from autotrack.vos.sam3 import build_sam3_text_detector

        settings = settings_from_env()
        size = os.environ.get(IMAGE_SIZE_ENV, "").strip()
        return build_sam3_text_detector(
            labels_from_env(), self.model or None,
            config=os.environ.get(CONFIG_ENV, "").strip() or "official",
            image_size=int(size) if size.isdigit() else (size or None),
            device=settings.device, min_score=settings.min_score)

    def __str__(self) -> str:
        return f"SAM3 ({self.variable}={self.model or 'unset'})"


class Sam3Function(DetectorFunction):
    """:class:`DetectorFunction` whose detector is a :class:`Sam3TextDetector`, and whose
    requests may narrow its prompts with a ``mapping``."""

    failure_subject = "this image"

    def __init__(self, detector: object, settings: FunctionSettings | None = None) -> None:
        super().__init__(detector, settings or FunctionSettings(  # type: ignore[arg-type]
            limits=RequestLimits(max_image_pixels=MASK_MAX_IMAGE_PIXELS)))

    def parse(self, body: object) -> Sam3Request:
        payload = parse_json_object(body, self.settings.limits)
        request = parse_detector_request(payload, self.settings.limits)
        return Sam3Request(
            detector=request,
            prompt_ids=self._mapped_prompts(payload.get("mapping")),
            ignored_fields=tuple(f for f in request.ignored_fields if f != "mapping"),
        )

    def run(self, request: Sam3Request) -> list[dict]:  # type: ignore[override]
        threshold = self.settings.default_threshold if request.detector.threshold is None \
            else request.detector.threshold
        detections = self.detector.detect_prompts(  # type: ignore[attr-defined]
            request.detector.image, request.prompt_ids,
            min_score=max(threshold, self.settings.min_score))
        return detections_to_cvat(
            detections, self.class_names, threshold=threshold,
            conv_mask_to_poly=request.detector.conv_mask_to_poly,
            polygon_tolerance=self.settings.polygon_tolerance,
            max_mask_pixels=self.settings.max_mask_pixels)

    def describe(self, request: Sam3Request, result: list[dict],  # type: ignore[override]
                 milliseconds: float) -> str:
        height, width = request.detector.image.shape[:2]
        return (f"{len(result)} shapes for {len(request.prompt_ids)} prompts on a "
                f"{width}x{height} {request.detector.image_format} in {milliseconds:.0f} ms"
                f"{left_out_note(result)}")

    def _mapped_prompts(self, mapping: object) -> tuple[int, ...]:
        if mapping is None:
            return tuple(range(len(self.class_names)))
        if not isinstance(mapping, dict):
            raise RequestError("'mapping' must be an object {model label: task label}",
                               field="mapping")
        if len(mapping) > MAX_MAPPING_ENTRIES:
            raise RequestError(f"'mapping' has {len(mapping)} entries, over "
                               f"{MAX_MAPPING_ENTRIES}", field="mapping")
        index = {name: i for i, name in enumerate(self.class_names)}
        ids = []
        for name, target in mapping.items():
            if name not in index:
                shown = name if len(name) <= 40 else name[:37] + "..."
                raise RequestError(
                    f"'mapping' names label {shown!r}, which this function does not have "
                    f"(its labels: {', '.join(self.class_names[:10])}"
                    f"{', ...' if len(self.class_names) > 10 else ''})", field="mapping")
            if not isinstance(target, (dict, str)):
                raise RequestError(f"'mapping' entry for {name!r} must be an object or a "
                                   "task label name", field="mapping")
            ids.append(index[name])
        return tuple(sorted(ids))


def settings_from_env() -> FunctionSettings:
    """The detector settings of the environment, with the mask functions' 4K UHD pixel limit
    as this function's default."""
    return FunctionSettings.from_env(max_image_pixels=MASK_MAX_IMAGE_PIXELS)


def labels_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The prompts in ``AUTOTRACK_SAM3_LABELS``, or :data:`DEFAULT_LABELS`."""
    from autotrack.vos.sam3.detector import prompt_texts

    environ = os.environ if environ is None else environ
    text = environ.get(LABELS_ENV, "").strip()
    return prompt_texts(text) if text else DEFAULT_LABELS


def init_context(
    context: object,
    detector_factory: object | None = None,
    *,
    settings: FunctionSettings | None = None,
    function_yaml: str | Path | None = None,
) -> Sam3Function:
    """Build SAM3 once per worker and keep it in ``context.user_data``; a failure is logged
    as one line, then raised so that Nuclio marks the function as failed."""
    started = time.perf_counter()
    factory = detector_factory or Sam3FromEnv()
    try:
        settings = settings or settings_from_env()
    except ValueError as exc:
        log(context, "error", f"autotrack: bad function settings: {exc}")
        raise
    log(context, "info", f"autotrack: loading {factory}")
    try:
        function = Sam3Function(factory(), settings)  # type: ignore[operator]
    except Exception as exc:
        log(context, "error", f"autotrack: cannot load SAM3: {one_line(exc)}")
        raise
    if function_yaml is not None:
        problem = _spec_problem(function_yaml, function)
        if problem:
            log(context, "warn", f"autotrack: {problem}")
    context.user_data.autotrack = function  # type: ignore[attr-defined]
    log(context, "info",
        f"autotrack: SAM3 ready in {time.perf_counter() - started:.1f} s: "
        f"{len(function.class_names)} prompts, device {settings.device or 'cpu'}")
    return function


def handle(context: object, event: object) -> object:
    """Answer one CVAT request with the SAM3 function :func:`init_context` loaded."""
    return handle_loaded(context, event, Sam3Function)


def _spec_problem(path: str | Path, function: Sam3Function) -> str | None:
    try:
        spec = function_yaml_spec(path)
    except ImportError:
        return None
    except (OSError, ValueError) as exc:
        return f"cannot check the label spec in {path}: {exc}"
    problems = spec_problems(spec, function.class_names, function.shape_type)
    if not problems:
        return None
    return (f"the label spec in {Path(path).name} does not name the prompts in {LABELS_ENV}, "
            f"so CVAT will offer labels SAM3 never returns or drop shapes: "
            f"{'; '.join(problems)}. Print the right spec with `python -m "
            f"autotrack.cvat.nuclio.sam3 \"{','.join(function.class_names)}\"` and redeploy")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the ``spec`` block of function.yaml for these prompts."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print('usage: python -m autotrack.cvat.nuclio.sam3 "label one,label two,..."',
              file=sys.stderr)
        return 2
    from autotrack.vos.sam3.detector import prompt_texts

    print(spec_yaml_block(label_spec(prompt_texts(args[0]), "mask")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
