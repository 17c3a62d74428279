"""Re-ID embedders: real OpenVINO models on real vtest.avi crops; OSNet on random weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from autotrack.detectors import load_detector
from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.geometry import iou_matrix
from autotrack.reid import Embedder, OnnxReidEmbedder, load_embedder
from autotrack.reid.base import crop_batch, pixel_boxes
from autotrack.reid.onnx_batch import encode, make_batch_dynamic, parse

PAIR_STARTS = (50, 150, 250, 350, 450, 550)
PAIR_GAP = 2  # frames between the two crops of one person (0.2 s at 10 fps)


@pytest.fixture(scope="module")
def vtest_people(shared_data: Path, vtest_video: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame index -> (frame, person boxes scoring >= 0.5) for the frames the tests pair."""
    wanted = set(PAIR_STARTS) | {s + PAIR_GAP for s in PAIR_STARTS}
    detector = load_detector(shared_data / "models" / "yolox_nano_416x416.onnx")
    capture = cv2.VideoCapture(str(vtest_video))
    people = {}
    try:
        for index in range(max(wanted) + 1):
            ok, frame = capture.read()
            assert ok, f"vtest.avi ended before frame {index}"
            if index in wanted:
                d = detector.detect(frame)
                keep = (d.class_ids == 0) & (d.scores >= 0.5)
                people[index] = (frame, d.boxes[keep])
    finally:
        capture.release()
    return people


@pytest.fixture(scope="module")
def reid_0248(shared_data: Path) -> OnnxReidEmbedder:
    return OnnxReidEmbedder(shared_data / "models" / "person-reidentification-retail-0248.onnx")


def _same_and_different(embedder, people):
    """Cosine similarities of one person 0.2 s apart (paired by IoU > 0.6) and of people
    who do not overlap within one frame."""
    same, different = [], []
    for start in PAIR_STARTS:
        (frame_a, boxes_a), (frame_b, boxes_b) = people[start], people[start + PAIR_GAP]
        a, b = embedder.embed(frame_a, boxes_a), embedder.embed(frame_b, boxes_b)
        iou = iou_matrix(boxes_a, boxes_b)
        rows, cols = linear_sum_assignment(-iou)
        paired = iou[rows, cols] > 0.6
        same.extend(np.einsum("ij,ij->i", a[rows[paired]], b[cols[paired]]))
        upper = np.triu_indices(len(boxes_a), 1)
        apart = iou_matrix(boxes_a, boxes_a)[upper] == 0
        different.extend((a @ a.T)[upper][apart])
    return np.array(same), np.array(different)


def test_same_person_is_closer_than_different_people(reid_0248, vtest_people):
    same, different = _same_and_different(reid_0248, vtest_people)
    assert len(same) >= 15 and len(different) >= 50
    # Measured here: 0.91 (22 pairs) against 0.20 (94 pairs).
    assert same.mean() > 0.8
    assert different.mean() < 0.3
    assert np.median(same) - np.median(different) > 0.5


def test_model_is_read_from_its_input_shape_and_batched(reid_0248):
    assert reid_0248.layout == "NHWC"
    assert reid_0248.input_hw == (256, 128)
    assert reid_0248.dim == 256
    assert reid_0248.batched  # the batch-1 export was given a free batch dimension
    assert reid_0248.name.startswith("person-reid-0248@")
    assert isinstance(reid_0248, Embedder)


@pytest.mark.parametrize("name", ["person-reid-0248", "person-reid-0287"])
def test_batched_embeddings_equal_one_by_one(name, vtest_people):
    embedder = load_embedder(name)
    assert embedder.batched
    frame, boxes = vtest_people[PAIR_STARTS[2]]
    boxes = boxes[:5]
    together = embedder.embed(frame, boxes)
    alone = np.concatenate([embedder.embed(frame, boxes[i:i + 1]) for i in range(len(boxes))])
    assert together.shape == (len(boxes), 256) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_boxes_are_clipped_and_degenerate_boxes_give_zero_rows(reid_0248, vtest_people):
    frame, boxes = vtest_people[PAIR_STARTS[0]]
    h, w = frame.shape[:2]
    box = boxes[0]
    spilling = box + np.array([-2000.0, -2000.0, 0.0, 0.0])  # reaches far past the corner
    clipped = np.array([0.0, 0.0, box[2], box[3]])
    queries = np.array([
        spilling, clipped,
        [10, 10, 10, 50],  # zero width
        [30, 30, 20, 60],  # inverted
        [np.nan, 0, 10, 10],
        [w + 5, 0, w + 50, 40],  # outside the frame
        [-50, -50, -1, -1],
    ])
    out = reid_0248.embed(frame, queries)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert not out[2:].any()
    assert reid_0248.embed(frame, np.zeros((0, 4))).shape == (0, 256)
    bounds, valid = pixel_boxes(np.array([[0.2, 0.2, 0.7, 0.9]]), w, h)
    assert valid.tolist() == [True] and bounds.tolist() == [[0, 0, 1, 1]]  # sub-pixel box
    crops, valid = crop_batch(frame, queries, (256, 128))
    assert crops.shape == (2, 256, 128, 3) and valid.sum() == 2


def test_bad_boxes_are_a_clear_error(reid_0248, vtest_people):
    frame = vtest_people[PAIR_STARTS[0]][0]
    with pytest.raises(ValueError, match="boxes must be"):
        reid_0248.embed(frame, np.zeros((3, 5)))
    with pytest.raises(AutotrackError, match="frame must be"):
        reid_0248.embed(frame[:, :, 0], np.zeros((1, 4)))


def test_load_embedder_refuses_what_is_not_a_reid_model(tmp_path):
    with pytest.raises(AutotrackError, match="not a Re-ID embedder"):
        load_embedder("yolox-nano")
    with pytest.raises(ModelNotFoundError, match="unknown Re-ID model"):
        load_embedder("no-such-model")
    with pytest.raises(ModelNotFoundError):
        load_embedder(tmp_path / "missing.pth")


# --------------------------------------------------------------- the batch edit
def test_protobuf_round_trip_is_lossless_and_batch_becomes_free(shared_data):
    raw = (shared_data / "models" / "person-reidentification-retail-0248.onnx").read_bytes()
    assert encode(parse(raw)) == raw
    edited, changed = make_batch_dynamic(raw)
    assert changed > 0
    import onnxruntime as ort

    session = ort.InferenceSession(edited, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 256, 128, 3]


def _tiny_model(reshape_via_constant: bool) -> bytes:
    """A hand-built ONNX model: [1, 8, 4, 3] image -> Reshape to [1, 96]. With the target
    shape in a Constant node the batch edit cannot fix it, so the embedder must fall back."""
    def value_info(name, dims):
        shape = encode([(1, 2, encode([(1, 0, d)])) for d in dims])
        tensor_type = encode([(1, 0, 1), (2, 2, shape)])  # float
        return encode([(1, 2, name.encode()), (2, 2, encode([(1, 2, tensor_type)]))])

    target = encode([(1, 0, 2), (2, 0, 7), (8, 2, b"target"),
                     (9, 2, np.array([1, 96], dtype="<i8").tobytes())])
    reshape = encode([(1, 2, b"x"), (1, 2, b"target"), (2, 2, b"y"), (4, 2, b"Reshape")])
    graph = [(1, 2, reshape)]
    if reshape_via_constant:
        attribute = encode([(1, 2, b"value"), (5, 2, target), (20, 0, 4)])  # type TENSOR
        graph.insert(0, (1, 2, encode([(2, 2, b"target"), (4, 2, b"Constant"),
                                       (5, 2, attribute)])))
    else:
        graph.append((5, 2, target))
    graph += [(2, 2, b"g"), (11, 2, value_info("x", [1, 8, 4, 3])),
              (12, 2, value_info("y", [1, 96]))]
    return encode([(1, 0, 8), (7, 2, encode(graph)), (8, 2, encode([(2, 0, 13)]))])


@pytest.mark.parametrize("via_constant", [False, True])
def test_batch_edit_is_checked_and_falls_back_to_one_crop_per_call(tmp_path, via_constant):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(_tiny_model(via_constant))
    embedder = OnnxReidEmbedder(path)
    assert embedder.input_hw == (8, 4) and embedder.dim == 96
    assert embedder.batched is (not via_constant)
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 20, 40], [30, 10, 50, 50], [5, 5, 45, 25]], dtype=float)
    together = embedder.embed(frame, boxes)
    alone = np.concatenate([embedder.embed(frame, b[None]) for b in boxes])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    # The model is the identity on pixels: the embedding is the normalised resized crop.
    crop = cv2.resize(frame[0:40, 0:20], (4, 8), interpolation=cv2.INTER_LINEAR)
    expected = crop.astype(np.float32).ravel()
    np.testing.assert_allclose(together[0], expected / np.linalg.norm(expected), atol=1e-6)


# --------------------------------------------------------------- torch / OSNet
try:
    import torch
except ImportError:  # torch is optional: the ONNX embedders above need none
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


@pytest.fixture(scope="module")
def osnet_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """A torchreid-style checkpoint of a randomly initialised osnet_x0_25 (DataParallel
    prefixes, optimizer-free, with an identity classifier as torchreid saves it)."""
    from autotrack.reid.osnet import osnet

    torch.manual_seed(0)
    model = osnet("x0_25")
    with torch.no_grad():  # non-trivial norms, so a wrongly mapped tensor shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.classifier.weight"] = torch.randn(751, 512)
    state["module.classifier.bias"] = torch.zeros(751)
    path = tmp_path_factory.mktemp("osnet") / "osnet_x0_25_market.pth.tar"
    torch.save({"state_dict": state, "epoch": 60, "rank1": 0.9}, path)
    return path, model.state_dict()


@needs_torch
def test_torch_embedder_loads_a_torchreid_checkpoint(osnet_checkpoint, vtest_people):
    from autotrack.reid import TorchReidEmbedder

    path, saved = osnet_checkpoint
    embedder = load_embedder(path)
    assert isinstance(embedder, TorchReidEmbedder) and isinstance(embedder, Embedder)
    assert embedder.model.channels == (16, 64, 96, 128) and embedder.model.blocks == (2, 2, 2)
    assert embedder.dim == 512 and embedder.name.startswith("osnet_x0_25_market.pth.tar@")
    for key, value in embedder.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    frame, boxes = vtest_people[PAIR_STARTS[1]]
    together = embedder.embed(frame, boxes[:4])
    alone = np.concatenate([embedder.embed(frame, boxes[i:i + 1]) for i in range(4)])
    assert together.shape == (4, 512) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def _save(path, state):
    torch.save(state, path)
    return path


@needs_torch
def test_torch_checkpoint_misfits_are_clear_errors(osnet_checkpoint, tmp_path):
    from autotrack.reid.torch_embedder import CheckpointError, TorchReidEmbedder

    _, saved = osnet_checkpoint
    missing = dict(saved)
    del missing["conv3.0.gate.fc1.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing tensors \(conv3.0.gate.fc1.weight\)"):
        TorchReidEmbedder.from_checkpoint(_save(tmp_path / "a.pth", missing))
    extra = dict(saved, **{"conv2.0.attention.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="unexpected tensors .conv2.0.attention.weight"):
        TorchReidEmbedder.from_checkpoint(_save(tmp_path / "b.pth", extra))
    wrong = dict(saved, **{"conv5.bn.weight": torch.zeros(7)})
    with pytest.raises(CheckpointError, match=r"wrong shape \(conv5.bn.weight \(7,\)"):
        TorchReidEmbedder.from_checkpoint(_save(tmp_path / "c.pth", wrong))
    resnet = {"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}
    with pytest.raises(CheckpointError, match="not a torchreid OSNet checkpoint"):
        TorchReidEmbedder.from_checkpoint(_save(tmp_path / "d.pth", resnet))
    with pytest.raises(CheckpointError, match="no state dict"):
        TorchReidEmbedder.from_checkpoint(_save(tmp_path / "e.pth", {"epoch": 3}))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@needs_torch
def test_torch_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    from autotrack.reid.torch_embedder import CheckpointError, TorchReidEmbedder

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="weights-only"):
        TorchReidEmbedder.from_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


@needs_torch
def test_osnet_ibn_variant_loads(tmp_path):
    from autotrack.reid.osnet import OSNet
    from autotrack.reid.torch_embedder import TorchReidEmbedder

    model = OSNet((8, 16, 24, 32), (1, 1, 1), feature_dim=None, instance_norm=True)
    path = _save(tmp_path / "ibn.pth", model.state_dict())
    embedder = TorchReidEmbedder.from_checkpoint(path, input_hw=(64, 32))
    assert embedder.dim == 32 and embedder.model.conv2[0].IN is not None
    frame = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    assert embedder.embed(frame, np.array([[10, 10, 40, 90]])).shape == (1, 32)


def test_unloadable_onnx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(AutotrackError, match="onnxruntime cannot load it"):
        load_embedder(path)
