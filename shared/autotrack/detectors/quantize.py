"""An int8 YOLOX built from the float one: static quantization calibrated on video frames.

Why per-channel: YOLOX-Nano's depthwise convolutions have channels whose weights differ by
orders of magnitude; one scale per tensor (opset 11's only choice) zeroes most of them and
the model finds nothing. So the graph is first raised to opset 13, whose QuantizeLinear /
DequantizeLinear take an axis, then quantized QDQ, weights int8 per output channel,
activations uint8 per tensor from the min/max seen on the calibration frames. Built once
into the models folder under its own name (``yolox-nano-int8``); the float model is never
replaced. Needs the ``onnx`` package (``pip install "cvat-autotrack[quantize]"``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from autotrack.detectors.yolox import YoloxOnnxDetector, letterbox
from autotrack.errors import AutotrackError

INT8_MODEL = "yolox-nano-int8"
FLOAT_MODEL = "yolox-nano"
OPSET = 13  # the first with per-axis (per-channel) QuantizeLinear
CALIBRATION_STEP = 16  # every 16th frame: 50 frames of vtest.avi's 795


def calibration_frames(video: str | Path, step: int = CALIBRATION_STEP) -> Iterator[np.ndarray]:
    """Every ``step``-th frame of a video, from frame 0."""
    from autotrack.video import FrameSource

    for index, frame in FrameSource(video).sampled(step):
        if frame is not None:
            yield frame


def quantize_yolox(float_model: str | Path, frames: Iterable[np.ndarray], output: str | Path
                   ) -> Path:
    """Write the int8 model of ``float_model`` calibrated on ``frames`` (BGR, any size) to
    ``output`` (atomically: a temporary file renamed once complete)."""
    try:
        import onnx
        from onnx import version_converter
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise AutotrackError('building the int8 model needs the onnx package: '
                             'pip install "cvat-autotrack[quantize]"') from None
    detector = YoloxOnnxDetector(float_model, threads=1)
    blobs = [letterbox(frame, detector.input_hw)[0] for frame in frames]
    if not blobs:
        raise AutotrackError("no calibration frames")
    input_name = detector._input_name

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._blobs = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self._blobs, None)
            return None if blob is None else {input_name: blob}

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=output.parent) as tmp:
        raised = Path(tmp) / "opset13.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(detector.model_path)), OPSET),
                  str(raised))
        built = Path(tmp) / output.name
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
        try:
            quantize_static(str(raised), str(built), Frames(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root.setLevel(level)
        built.replace(output)
    return output
