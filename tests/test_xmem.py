"""XMem (autotrack.vos.xmem): the official checkpoint layout, parity with the official
inference code (network + sensory/working/long-term memory with consolidation) through a
stored fixture, a memory that stays bounded, prompts, forget/reset, and checkpoint errors.

tests/fixtures/xmem_parity.npz was written by tools/xmem_parity_fixture.py, which runs the
official hkchengrex/XMem ``InferenceCore`` with ``random_state_dict(seed=0)`` loaded into the
official network (the 62M weights are regenerated here from the seed, not stored) on real
bedroom frames at short side 80, with budgets small enough that consolidation and long-term
removal run. See that script's docstring for the fixture's contents.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models import resnet18, resnet50

from autotrack.errors import AutotrackError, InputError, ModelNotFoundError
from autotrack.vos import xmem
from autotrack.vos.base import ObjectPrompt
from autotrack.vos.xmem import (
    CHECKPOINT_ENV,
    RELEASE_URL,
    XMemSegmenter,
    build_xmem_segmenter,
    make_budget,
)
from autotrack.vos.xmem.checkpoint import load_checkpoint, random_xmem
from autotrack.vos.xmem.segmenter import preprocess_frame, processing_shape

FIXTURE = Path(__file__).parent / "fixtures" / "xmem_parity.npz"
TOL = 1e-4

# The official key list (hkchengrex/XMem model/network.py, default widths), taken from the
# official code: 412 entries whose "name:AxBx..." lines, joined by newlines, hash to this.
OFFICIAL_KEYS = 412
OFFICIAL_SHA256 = "cd1defce9875a2aeb255928ba45a026539e414371a14607d976cff4da57d2b0e"
# Outside the two ResNet trunks: module -> weight shape (a bias of the first size follows;
# "mlp" is CBAM's two linears, "spatial" its 7x7 conv).
OFFICIAL_HEADS = """
value_encoder.fuser.block1.downsample 512x1280x3x3 | value_encoder.fuser.block1.conv1 512x1280x3x3
value_encoder.fuser.block1.conv2 512x512x3x3
value_encoder.fuser.attention.ChannelGate.mlp.1 32x512
value_encoder.fuser.attention.ChannelGate.mlp.3 512x32
value_encoder.fuser.attention.SpatialGate.spatial.conv 1x2x7x7
value_encoder.fuser.block2.conv1 512x512x3x3 | value_encoder.fuser.block2.conv2 512x512x3x3
value_encoder.hidden_reinforce.transform 192x576x3x3
key_proj.key_proj 64x1024x3x3 | key_proj.d_proj 1x1024x3x3 | key_proj.e_proj 64x1024x3x3
decoder.fuser.block1.downsample 512x1600x3x3 | decoder.fuser.block1.conv1 512x1600x3x3
decoder.fuser.block1.conv2 512x512x3x3
decoder.fuser.attention.ChannelGate.mlp.1 32x512
decoder.fuser.attention.ChannelGate.mlp.3 512x32
decoder.fuser.attention.SpatialGate.spatial.conv 1x2x7x7
decoder.fuser.block2.conv1 512x512x3x3 | decoder.fuser.block2.conv2 512x512x3x3
decoder.hidden_update.g16_conv 256x512x1x1 | decoder.hidden_update.g8_conv 256x256x1x1
decoder.hidden_update.g4_conv 256x257x1x1 | decoder.hidden_update.transform 192x320x3x3
decoder.up_16_8.skip_conv 512x512x3x3 | decoder.up_16_8.out_conv.downsample 256x512x3x3
decoder.up_16_8.out_conv.conv1 256x512x3x3 | decoder.up_16_8.out_conv.conv2 256x256x3x3
decoder.up_8_4.skip_conv 256x256x3x3 | decoder.up_8_4.out_conv.conv1 256x256x3x3
decoder.up_8_4.out_conv.conv2 256x256x3x3 | decoder.pred 1x256x3x3
"""


def _official_layout() -> dict[str, tuple[int, ...]]:
    """The official keys: torchvision's ResNet-50/18 names to layer3 (layer1 is "res2" in the
    key encoder; the value encoder's conv1 takes 5 channels), then the heads above."""
    keys: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):  # names and shapes only
        trunks = (("key_encoder", resnet50(), {"layer1": "res2"}),
                  ("value_encoder", resnet18(), {}))
    for prefix, net, rename in trunks:
        for name, tensor in net.state_dict().items():
            top = name.split(".")[0]
            if top in ("layer4", "fc") or name.endswith("num_batches_tracked"):
                continue
            shape = tuple(tensor.shape)
            if prefix == "value_encoder" and name == "conv1.weight":
                shape = (64, 5, 7, 7)
            keys[f"{prefix}.{rename.get(top, top)}{name[len(top):]}"] = shape
    for line in OFFICIAL_HEADS.split("\n"):
        for entry in filter(None, (e.strip() for e in line.split("|"))):
            module, shape = entry.split()
            dims = tuple(int(d) for d in shape.split("x"))
            keys[f"{module}.weight"], keys[f"{module}.bias"] = dims, dims[:1]
    return keys


@pytest.fixture(autouse=True, scope="module")
def _plain_convolutions():
    """oneDNN re-packs every weight on each call, which dominates at these tiny frame sizes
    (62M weights over a few pixels): torch's plain kernels halve this file's CPU time."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def network():
    return random_xmem(seed=0)


def _frame(bedroom: Path, index: int) -> np.ndarray:
    image = cv2.imread(str(bedroom / f"{index:05d}.jpg"))
    assert image is not None, f"cannot read frame {index} of {bedroom}"
    return image


def test_state_dict_is_the_official_layout_and_loads_strictly(network, tmp_path) -> None:
    state = network.state_dict()
    expected = _official_layout()
    got = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert got == expected
    rows = "\n".join(f"{k}:{'x'.join(map(str, v.shape))}" for k, v in state.items())
    assert len(state) == OFFICIAL_KEYS
    assert hashlib.sha256(rows.encode()).hexdigest() == OFFICIAL_SHA256

    path = tmp_path / "XMem.pth"
    torch.save(state, path)  # a plain state dict, as the released checkpoints are
    loaded = load_checkpoint(path)
    assert loaded.dims == network.dims
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_bad_checkpoints_are_one_line_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        build_xmem_segmenter()
    message = str(err.value)
    assert CHECKPOINT_ENV in message and RELEASE_URL in message and "\n" not in message

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(ModelNotFoundError, match="missing.pth"):
        build_xmem_segmenter()

    partial = tmp_path / "partial.pth"
    torch.save({"key_proj.key_proj.weight": torch.zeros(64, 1024, 3, 3),
                "value_encoder.fuser.block2.conv2.weight": torch.zeros(512, 512, 3, 3)}, partial)
    with pytest.raises(AutotrackError, match="does not match") as err:
        build_xmem_segmenter(partial)
    assert "\n" not in str(err.value)

    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": Path("x")}, pickled)  # needs pickle code: refused unread
    with pytest.raises(AutotrackError, match="cannot read"):
        load_checkpoint(pickled)

    with pytest.raises(ValueError, match="not both"):
        build_xmem_segmenter(partial, random_init=True)
    with pytest.raises(ValueError, match="unknown XMem memory setting"):
        build_xmem_segmenter(random_init=True, max_frames=3)
    with pytest.raises(ValueError, match="min_mid_term_frames"):
        make_budget(max_mid_term_frames=3, min_mid_term_frames=3)


@pytest.mark.parametrize("name", ["a", "b"])
def test_matches_official_inference(fixture, network, bedroom_dir, name) -> None:
    """Official probabilities within 1e-4, the same masks, and the same memory sizes after
    every frame (working-memory frames, long-term elements)."""
    meta = json.loads(str(fixture["meta"]))
    spec = meta["scenarios"][name]
    size, stride = meta["size"], meta["stride"]
    seg = XMemSegmenter(network, make_budget(**spec["budget"]), size=size,
                        keep_probabilities=True)
    digest = hashlib.sha256()
    for t, index in enumerate(spec["frames"]):
        image = _frame(bedroom_dir, index)
        digest.update(preprocess_frame(image, processing_shape(*image.shape[:2], size))
                      .numpy().tobytes())
        prompts = []
        if t in spec["prompt_frames"]:
            labels = fixture[f"{name}.prompt{t}"]
            prompts = [ObjectPrompt(int(obj), mask=labels == obj)
                       for obj in np.unique(labels) if obj]
        masks = seg.step(image, prompts)

        expected = fixture[f"{name}.prob"][t]
        expected = expected[~np.isnan(expected[:, 0, 0])]
        got = seg.last_probabilities[:, ::stride, ::stride].numpy()
        assert got.shape == expected.shape, (t, got.shape, expected.shape)
        diff = float(np.abs(got - expected).max())
        assert diff <= TOL, f"frame {t}: max abs diff {diff:.2e}"

        label_image = np.zeros(image.shape[:2], np.uint8)
        for i, obj in enumerate(seg.object_ids):
            label_image[masks[obj]] = i + 1
        mismatch = float((label_image != fixture[f"{name}.labels"][t]).mean())
        assert mismatch <= 1e-4, f"frame {t}: {mismatch:.2%} of pixels differ"
        stats = seg.memory_stats()
        assert (stats.frames_kept, seg.long_term_elements) == tuple(fixture[f"{name}.trace"][t])
    assert digest.hexdigest() == str(fixture[f"{name}.input_sha256"]), (
        "the frames decode differently here than where the fixture was made")
    if name == "a":  # the fixture ran through consolidation and long-term removal
        assert fixture["a.trace"][:, 1].max() == spec["budget"]["max_long_term_elements"]


def test_memory_stays_bounded(network, bedroom_dir) -> None:
    """A memory frame on every frame, an object joining and two leaving: the working memory
    never reaches max_mid_term_frames, the long-term memory never passes its cap, so the
    bytes held never pass what the budget allows, whatever the video length."""
    budget = make_budget(mem_every=1, max_mid_term_frames=3, min_mid_term_frames=2,
                         num_prototypes=4, max_long_term_elements=16)
    seg = XMemSegmenter(network, budget, size=32)
    dims = network.dims
    hw = 2 * 4  # 32 x 56 pixels, padded to 32 x 64: 2 x 4 keys a frame
    frames = [cv2.resize(_frame(bedroom_dir, t), (240, 135), interpolation=cv2.INTER_AREA)
              for t in range(16)]
    start = [ObjectPrompt(1, box=(25, 50, 88, 105)), ObjectPrompt(2, box=(150, 38, 200, 112))]
    long_full = False
    for t, frame in enumerate(frames):
        prompts = start if t == 0 else [ObjectPrompt(3, box=(108, 14, 144, 54))] if t == 4 else []
        if t == 10:  # the first object group goes: its keys too
            before = seg.memory_stats().feature_bytes
            seg.forget(1)
            seg.forget(2)
            assert seg.memory_stats().feature_bytes < before
        masks = seg.step(frame, prompts)
        stats = seg.memory_stats()
        n = 2 if t < 4 else 3 if t < 10 else 1
        assert set(masks) == set(seg.object_ids) and stats.objects == len(masks) == n
        assert 1 <= stats.frames_kept < budget.max_mid_term_frames
        assert seg.long_term_elements <= budget.max_long_term_elements
        long_full |= seg.long_term_elements > budget.max_long_term_elements - budget.num_prototypes
        # float32: key + selection + shrinkage + 2 usage counters + a value per object
        work = budget.max_mid_term_frames * hw * (2 * dims.key_dim + 3 + n * dims.value_dim)
        long = budget.max_long_term_elements * (dims.key_dim + 3 + n * dims.value_dim)
        assert stats.feature_bytes <= 4 * (work + long + n * dims.hidden_dim * hw)
    assert long_full  # removal of obsolete long-term elements ran
    assert seg.long_term_elements > 0  # and the long-term memory outlived the first group


def test_prompts(network, bedroom_dir) -> None:
    seg = XMemSegmenter(network, make_budget(), size=32)
    image = _frame(bedroom_dir, 0)
    h, w = image.shape[:2]
    with pytest.raises(ValueError, match="not clicks"):
        seg.step(image, [ObjectPrompt(1, points=[[10, 10]], point_labels=[1])])
    with pytest.raises(ValueError, match="mask is"):
        seg.step(image, [ObjectPrompt(1, mask=np.ones((h // 2, w), bool))])
    with pytest.raises(ValueError, match="covers no pixel"):
        seg.step(image, [ObjectPrompt(1, box=(w + 10, 0, w + 50, 40))])
    with pytest.raises(ValueError, match="two prompts"):
        seg.step(image, [ObjectPrompt(1, box=(0, 0, 9, 9)), ObjectPrompt(1, box=(0, 0, 5, 5))])
    with pytest.raises(ValueError, match="uint8"):
        seg.step(image.astype(np.float32))
    assert seg.step(image) == {} and seg.memory_stats().objects == 0  # nothing to follow yet

    # a box is a filled rectangle (clicks beside it are ignored); on the prompted frame the
    # output is the prompt itself, up to the 32-px processing grid
    box = (200.0, 100.0, 520.0, 400.0)
    masks = seg.step(image, [ObjectPrompt(7, box=box, points=[[1, 1]], point_labels=[0])])
    rect = np.zeros((h, w), bool)
    rect[100:400, 200:520] = True
    iou = (masks[7] & rect).sum() / (masks[7] | rect).sum()
    assert iou > 0.9
    assert seg.last_probabilities is None  # kept only with keep_probabilities=True
    with pytest.raises(ValueError, match="reset"):
        seg.step(cv2.resize(image, (w // 2, h // 2)))


def test_forget_and_reset(network, bedroom_dir, monkeypatch) -> None:
    # the public builder; random_xmem is what the network fixture already ran, reused here
    seeds = []
    monkeypatch.setattr(xmem, "random_xmem", lambda seed: seeds.append(seed) or network)
    monkeypatch.setenv(CHECKPOINT_ENV, "/nonexistent/XMem.pth")  # ignored with random_init
    seg = build_xmem_segmenter(random_init=True, seed=3, size=32, mem_every=1)
    assert seeds == [3] and seg.budget.mem_every == 1
    frames = [_frame(bedroom_dir, i) for i in range(4)]
    seg.step(frames[0], [ObjectPrompt(1, box=(100, 200, 350, 420)),
                         ObjectPrompt(2, box=(600, 150, 800, 450))])
    seg.step(frames[1])
    two = seg.memory_stats()
    assert two.objects == 2 and two.frames_kept == 2

    seg.forget(1)
    seg.forget(99)  # unknown: ignored
    one = seg.memory_stats()
    assert one.objects == 1 and one.feature_bytes < two.feature_bytes
    assert set(seg.step(frames[2])) == {2}

    # a correction of a known object and a new object on the same frame
    masks = seg.step(frames[3], [ObjectPrompt(2, box=(500, 100, 900, 500)),
                                 ObjectPrompt(5, box=(10, 10, 200, 200))])
    assert set(masks) == {2, 5} and masks[5][50, 50] and masks[2][300, 700]

    seg.reset()
    assert seg.memory_stats() == type(two)(frames_kept=0, feature_bytes=0, objects=0)
    assert seg.step(frames[0]) == {}
    small = cv2.resize(frames[0], (480, 270))  # a new video may have another size
    assert set(seg.step(small, [ObjectPrompt(3, box=(10, 10, 100, 100))])) == {3}
    seg.forget(3)  # the last object: everything is freed
    assert seg.memory_stats().feature_bytes == 0


def test_elongated_frames_are_refused_before_any_tensor(network) -> None:
    """The short side is scaled to ``size``: a 2x8000 frame would become 480 x 1,920,000."""
    seg = XMemSegmenter(network, make_budget(), size=480)
    thin = np.zeros((2, 8000, 3), np.uint8)
    for prompts in ([], [ObjectPrompt(1, box=(0, 0, 4000, 2))]):
        with pytest.raises(InputError, match="4:1") as refused:
            seg.step(thin, prompts)
        assert "\n" not in str(refused.value)
    assert seg.memory_stats().objects == 0
    assert processing_shape(270, 1080, 480) == (480, 1920)  # 4:1 is still taken
    with pytest.raises(InputError):
        processing_shape(8000, 2, 480)
    assert processing_shape(2, 8000, 0) == (2, 8000)  # the frame's own size: nothing grows
