"""SAM2 (autotrack.vos.sam2): builders and checkpoints, the interactor, and the streaming
segmenter checked against Meta's own ``SAM2VideoPredictor`` / ``SAM2ImagePredictor`` (the
installed ``sam2`` package) on the same random weights and real bedroom frames.

No SAM2 weights exist here, so every model is seeded random SAM2.1-tiny at 128 px (the
equivalence checks hold for any weights; mask quality cannot be tested without real ones).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from autotrack.errors import InputError, ModelNotFoundError  # noqa: E402
from autotrack.vos.base import ObjectPrompt  # noqa: E402
from autotrack.vos.sam2 import (  # noqa: E402
    ENV_CHECKPOINT,
    Sam2CheckpointError,
    Sam2Interactor,
    Sam2Segmenter,
    build_sam2_interactor,
    build_sam2_model,
    build_sam2_segmenter,
)

SIZE = 128  # SAM2's image_size here: 8x8 memory grid, fast on 2 cores
CLIP = 16  # frames given to the official predictor (>= 16: see Sam2Segmenter's docstring)
TOL = 1e-4
# the stream is bit-exact with the official predictor here; 1e-6 still catches e.g. spatial
# memories kept in float32 instead of the official bfloat16 (8.8e-6 on frame 1)
VIDEO_TOL = 1e-6


def _frame(path: Path) -> np.ndarray:
    """A bedroom JPEG decoded as the official frame loader decodes it (PIL), as BGR."""
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[..., ::-1])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """At 128 px every op is tiny: a second intra-op thread only adds synchronisation, which
    costs several times the work on a busy 2-core CI (measured: 38 s CPU vs 4.6 s for the 40
    frames below)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return build_sam2_model(image_size=SIZE, random_init=True)


@pytest.fixture(scope="module")
def frames(bedroom_dir: Path) -> list[np.ndarray]:
    return [_frame(bedroom_dir / f"{i:05d}.jpg") for i in range(40)]


# -- building -------------------------------------------------------------------------------


def test_builder_errors_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    with pytest.raises(ModelNotFoundError, match=ENV_CHECKPOINT) as missing:
        build_sam2_segmenter()
    assert "092824/sam2.1_hiera_tiny.pt" in str(missing.value)
    assert "\n" not in str(missing.value)
    with pytest.raises(ModelNotFoundError, match="072824/sam2_hiera_large.pt"):
        build_sam2_interactor(config="sam2_hiera_l")
    with pytest.raises(ModelNotFoundError, match="not found"):
        build_sam2_interactor(tmp_path / "nope.pt")
    monkeypatch.setenv(ENV_CHECKPOINT, str(tmp_path / "gone.pt"))
    with pytest.raises(ModelNotFoundError, match="gone.pt"):
        build_sam2_segmenter()  # a named checkpoint is never replaced by noise
    with pytest.raises(ValueError, match="not both"):
        build_sam2_segmenter(tmp_path / "x.pt", random_init=True)
    with pytest.raises(ValueError, match="sam2.1_hiera_b\\+"):
        build_sam2_segmenter(config="sam2.1_hiera_xl", random_init=True)
    for size in (100, 1000, 64, 4096):
        with pytest.raises(ValueError, match="multiple of 32"):
            build_sam2_segmenter(image_size=size, random_init=True)
    with pytest.raises(TypeError, match="max_cond_frames"):
        build_sam2_segmenter(random_init=True, max_frames=3)


def test_image_size_reaches_every_size_dependent_part(model):
    grid = SIZE // 16
    assert model.image_size == SIZE
    assert model.sam_prompt_encoder.image_embedding_size == (grid, grid)
    assert model.sam_prompt_encoder.mask_input_size == (4 * grid, 4 * grid)
    for layer in model.memory_attention.layers:  # RoPE tables built for the SIZE/16 grid
        assert layer.self_attn.freqs_cis.shape[0] == grid * grid
        assert layer.cross_attn_image.freqs_cis.shape[0] == grid * grid
    with torch.inference_mode():
        out = model.forward_image(torch.zeros(1, 3, SIZE, SIZE))
    assert [tuple(f.shape[-2:]) for f in out["backbone_fpn"]] == [
        (4 * grid, 4 * grid), (2 * grid, 2 * grid), (grid, grid)]


class _Payload:
    """Stands for arbitrary pickled code in a checkpoint."""


def test_official_layout_checkpoint_round_trip(model, tmp_path, monkeypatch):
    from sam2.build_sam import _load_checkpoint

    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    loaded = build_sam2_model(image_size=256, seed=1, random_init=True)
    _load_checkpoint(loaded, str(path))  # Meta's own strict loader: no missing/unexpected key
    assert loaded.image_size == 256  # weights do not depend on image_size
    monkeypatch.setenv(ENV_CHECKPOINT, str(path))
    from_env = build_sam2_model(image_size=SIZE, seed=1)  # no random_init: the env var is read
    assert not torch.equal(build_sam2_model(image_size=SIZE, seed=2, random_init=True).no_obj_ptr,
                           model.no_obj_ptr)  # asked for noise: noise, whatever the env says
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
        assert torch.equal(from_env.state_dict()[name], tensor), name
    monkeypatch.delenv(ENV_CHECKPOINT)
    seeded = build_sam2_model(image_size=SIZE, seed=1, random_init=True)
    assert not torch.equal(seeded.no_obj_ptr, model.no_obj_ptr)

    with pytest.raises(Sam2CheckpointError, match="unexpected tensors.*no_obj_embed_spatial"):
        build_sam2_model(path, config="sam2_hiera_t", image_size=SIZE)  # 2.1 weights, 2.0 net
    torch.save({"model": {k: v for k, v in model.state_dict().items() if k != "no_obj_ptr"}},
               path)
    with pytest.raises(Sam2CheckpointError, match="1 missing tensors \\(no_obj_ptr\\)"):
        build_sam2_model(path, image_size=SIZE)
    refused = [({"weights": model.state_dict()}, "not an official SAM2 checkpoint"),
               ({"model": {"no_obj_ptr": 1.0}}, "is not a named tensor"),
               ({"model": {}, "extra": _Payload()}, "weights-only")]
    for content, message in refused:
        torch.save(content, path)
        with pytest.raises(Sam2CheckpointError, match=message):
            build_sam2_model(path, image_size=SIZE)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(Sam2CheckpointError, match="weights-only"):
        build_sam2_model(path, image_size=SIZE)


# -- interactor ------------------------------------------------------------------------------


def test_interactor_equals_official_image_predictor(model, frames):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    interactor = Sam2Interactor(model)
    official = SAM2ImagePredictor(model)
    official._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]  # 1024 fixed
    image = frames[0]
    official.set_image(np.ascontiguousarray(image[..., ::-1]))
    click, box = np.array([[480.0, 300.0]], np.float32), (100.0, 150.0, 400.0, 500.0)
    cases = [  # (prompt, official kwargs): one click is ambiguous -> three masks, best taken
        (ObjectPrompt(1, click, [1]), dict(point_coords=click, point_labels=[1])),
        (ObjectPrompt(1, box=box), dict(box=np.array(box), multimask_output=False)),
        (ObjectPrompt(1, [[480, 300], [200, 450]], [1, 0], box=box),
         dict(point_coords=np.array([[480, 300], [200, 450]], np.float32),
              point_labels=[1, 0], box=np.array(box), multimask_output=False)),
    ]
    for prompt, kwargs in cases:
        result = interactor.segment(image, prompt)
        masks, scores, _ = official.predict(**kwargs)
        best = int(np.argmax(scores))
        assert result.mask.dtype == bool and result.mask.shape == image.shape[:2]
        assert np.array_equal(result.mask, masks[best])
        assert result.score == pytest.approx(float(scores[best]), abs=TOL)
        assert 0.0 <= result.score <= 1.0
        again = interactor.segment(image.copy(), prompt)  # same bytes: cached, same answer
        assert np.array_equal(again.mask, result.mask) and again.score == result.score
    assert interactor.cached_images == 1


def test_interactor_cache_and_prompts(model, frames):
    interactor = Sam2Interactor(model, cache_size=2)
    for image in frames[:3]:
        interactor.segment(image, ObjectPrompt(1, [[10, 10]], [1]))
    assert interactor.cached_images == 2  # LRU: the oldest image went
    mask = np.zeros(frames[0].shape[:2], bool)
    mask[100:300, 200:500] = True
    result = interactor.segment(frames[0], ObjectPrompt(1, mask=mask))  # a mask alone
    assert result.mask.shape == mask.shape and 0.0 <= result.score <= 1.0
    with pytest.raises(InputError, match="on the 960x540 frame"):
        interactor.segment(frames[0], ObjectPrompt(1, [[961, 10]], [1]))
    with pytest.raises(InputError, match="uint8"):
        interactor.segment(frames[0].astype(np.float32), ObjectPrompt(1, [[10, 10]], [1]))
    with pytest.raises(InputError, match="mask is 10x10"):
        interactor.segment(frames[0], ObjectPrompt(1, mask=np.ones((10, 10), bool)))


# -- video segmenter -------------------------------------------------------------------------


def test_segmenter_equals_official_video_predictor(model, bedroom_dir, tmp_path):
    """Same weights, same frames, same prompts: the official predictor and the stream give the
    same mask logits on every frame, through a correction and a new object mid-video."""
    from sam2.build_sam import build_sam2_video_predictor

    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(CLIP):
        (clip / f"{i:05d}.jpg").symlink_to(bedroom_dir / f"{i:05d}.jpg")
    official = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", hydra_overrides_extra=[
            f"++model.image_size={SIZE}",
            "++model.add_all_frames_to_correct_as_cond=true"])  # corrections last in a stream
    official.load_state_dict(model.state_dict())
    click, box = np.array([[480.0, 300.0]], np.float32), (100.0, 150.0, 400.0, 500.0)
    fix, fix_labels = np.array([[500.0, 320.0], [200.0, 200.0]], np.float32), np.array([1, 0])
    new_mask = np.zeros((540, 960), bool)
    new_mask[50:200, 600:900] = True
    fix_at, last = 4, 7
    expected: dict[int, dict[int, np.ndarray]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hole filling skipped: no CUDA extension (documented)
        state = official.init_state(str(clip))
        official.add_new_points_or_box(state, 0, 1, points=click, labels=np.array([1]))
        official.add_new_points_or_box(state, 0, 2, box=np.array(box, np.float32))
        for f, ids, logits in official.propagate_in_video(state, max_frame_num_to_track=fix_at):
            expected[f] = {i: logits[j, 0].numpy() for j, i in enumerate(ids)}
        official.add_new_points_or_box(state, fix_at, 1, points=fix, labels=fix_labels)
        official.add_new_mask(state, fix_at, 3, new_mask)
        for f, ids, logits in official.propagate_in_video(
                state, start_frame_idx=fix_at, max_frame_num_to_track=last - fix_at):
            expected[f] = {i: logits[j, 0].numpy() for j, i in enumerate(ids)}

    segmenter = Sam2Segmenter(model)
    prompts = {0: [ObjectPrompt(1, click, [1]), ObjectPrompt(2, box=box)],
               fix_at: [ObjectPrompt(1, fix, fix_labels), ObjectPrompt(3, mask=new_mask)]}
    assert sorted(expected) == list(range(last + 1))
    for f in range(last + 1):
        got = segmenter.step_logits(_frame(clip / f"{f:05d}.jpg"), prompts.get(f, ()))
        assert sorted(got) == sorted(expected[f]), f
        for oid, logits in got.items():
            assert logits.shape == (540, 960) and logits.dtype == np.float32
            np.testing.assert_allclose(logits, expected[f][oid], rtol=0, atol=VIDEO_TOL,
                                       err_msg=f"frame {f}, object {oid}")
            assert (logits > 0).any() and not (logits > 0).all()  # a real comparison


def test_memory_stays_within_budget(model, frames):
    segmenter = Sam2Segmenter(model, max_cond_frames=2)
    grid = SIZE // 16
    feature = 64 * grid * grid * 2  # one bfloat16 spatial memory
    pointer = 256 * 4
    bound_frames = 2 * segmenter.max_cond_frames + segmenter.num_maskmem - 1
    bound_bytes = 64 * grid * grid * 4 + 2 * (  # the shared position encoding, 2 objects
        (segmenter.max_cond_frames + segmenter.num_maskmem - 1) * feature
        + (segmenter.max_cond_frames + segmenter.max_obj_ptrs - 1) * pointer)
    kept = []
    for f, image in enumerate(frames):
        prompts = []
        if f == 0:
            prompts = [ObjectPrompt(1, [[480, 300]], [1]),
                       ObjectPrompt(2, box=(100, 150, 400, 500))]
        elif f % 10 == 0:  # corrections: more prompted frames than the budget keeps
            prompts = [ObjectPrompt(1, [[470 + f, 300]], [1])]
        masks = segmenter.step(image, prompts)
        assert sorted(masks) == [1, 2]
        assert all(m.shape == (540, 960) and m.dtype == bool for m in masks.values())
        stats = segmenter.memory_stats()
        assert stats.objects == 2
        assert stats.frames_kept <= bound_frames and stats.feature_bytes <= bound_bytes, f
        kept.append(stats.frames_kept)
    assert kept[:9] == [1, 2, 3, 4, 5, 6, 7, 7, 7]  # frame 0 + the last num_maskmem - 1
    assert segmenter.frame_index == len(frames)


def test_frames_without_objects_skip_the_image_encoder(model, frames):
    encoded = []
    forward_image = model.forward_image
    start = [ObjectPrompt(1, [[480, 300]], [1])]
    late = Sam2Segmenter(model)
    model.forward_image = lambda image: encoded.append(1) or forward_image(image)
    try:
        for image in frames[:3]:
            assert late.step_logits(image) == {}
        assert encoded == [] and late.frame_index == 3
        late_out = [late.step_logits(frames[3], start), late.step_logits(frames[4])]
        assert len(encoded) == 2
    finally:
        del model.forward_image  # the class's method again
    # the frame index still counts the skipped frames (SAM2 reads it): as a stream whose
    # object starts on frame 3
    eager = Sam2Segmenter(model)
    eager._frame_idx = 3
    eager_out = [eager.step_logits(frames[3], start), eager.step_logits(frames[4])]
    for got, expected in zip(late_out, eager_out):
        assert got.keys() == expected.keys() == {1}
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("setting", [("max_obj_ptrs_in_encoder", 3),
                                     ("use_obj_ptrs_in_encoder", False)])
def test_spatial_memories_outlive_a_shorter_pointer_window(model, frames, monkeypatch, setting):
    """With fewer pointers than spatial memories read (not so in the released configs), a frame
    keeps its spatial memory while SAM2 reads it, though its pointer is gone."""
    monkeypatch.setattr(model, *setting)
    segmenter = Sam2Segmenter(model)
    assert segmenter.max_obj_ptrs < segmenter.num_maskmem
    kept = []
    for f, image in enumerate(frames[:9]):
        masks = segmenter.step(image, [ObjectPrompt(1, [[480, 300]], [1])] if f == 0 else ())
        assert sorted(masks) == [1]
        kept.append(segmenter.memory_stats().frames_kept)
    assert kept == [1, 2, 3, 4, 5, 6, 7, 7, 7]  # frame 0 + the last num_maskmem - 1
    recent = segmenter._objects[1].recent
    assert len(recent) == segmenter.num_maskmem - 1
    assert sum(m.obj_ptr is not None for m in recent.values()) == segmenter.max_obj_ptrs - 1


def test_forget_reset_and_lost_objects(model, frames):
    segmenter = Sam2Segmenter(model)
    start = [ObjectPrompt(1, [[480, 300]], [1]), ObjectPrompt(2, box=(100, 150, 400, 500))]
    first = [segmenter.step_logits(frames[0], start), segmenter.step_logits(frames[1])]
    gone = ObjectPrompt(3, mask=np.zeros((540, 960), bool))  # "not on this frame"
    masks = segmenter.step(frames[2], [gone])
    assert sorted(masks) == [1, 2, 3] and not masks[3].any()  # key kept, mask empty
    refine = np.zeros((540, 960), bool)
    refine[200:400, 300:700] = True
    masks = segmenter.step(frames[3], [ObjectPrompt(2, [[500, 300]], [0], mask=refine)])
    assert sorted(masks) == [1, 2, 3]  # clicks on a given mask correct object 2
    segmenter.forget(1)
    segmenter.forget(99)  # unknown: nothing to do
    assert sorted(segmenter.step(frames[4])) == [2, 3]
    assert segmenter.memory_stats().objects == 2
    segmenter.reset()
    assert segmenter.memory_stats() == type(segmenter.memory_stats())(0, 0, 0)
    assert segmenter.step(frames[0]) == {}
    segmenter.reset()
    again = [segmenter.step_logits(frames[0], start), segmenter.step_logits(frames[1])]
    for before, after in zip(first, again):  # nothing survived the reset
        assert before.keys() == after.keys()
        for oid in before:
            np.testing.assert_array_equal(before[oid], after[oid])


def test_segmenter_refuses_bad_input(model, frames):
    segmenter = Sam2Segmenter(model, max_objects=2)
    image = frames[0]
    bad = [
        ([ObjectPrompt(1, [[10, 10]], [1]), ObjectPrompt(1, box=(0, 0, 5, 5))], "two prompts"),
        ([ObjectPrompt(1, mask=np.ones((270, 480), bool))], "mask is 480x270"),
        ([ObjectPrompt(1, [[-1, 10]], [1])], "points must lie"),
        ([ObjectPrompt(1, box=(1000, 10, 1100, 20))], "off the 960x540 frame"),
        ([ObjectPrompt(i, [[10, 10]], [1]) for i in range(3)], "max_objects=2"),
    ]
    for prompts, message in bad:
        with pytest.raises(InputError, match=message):
            segmenter.step(image, prompts)
    assert segmenter.frame_index == 0 and segmenter.memory_stats().objects == 0
    with pytest.raises(InputError, match="uint8"):
        segmenter.step(image[..., 0])
    with pytest.raises(ValueError, match="needs points, a box or a mask"):
        ObjectPrompt(1)
    masks = segmenter.step(image, [ObjectPrompt(1, box=(900, 500, 1200, 700))])  # clipped
    assert sorted(masks) == [1]
    with pytest.raises(ValueError, match="max_cond_frames"):
        Sam2Segmenter(model, max_cond_frames=0)


@pytest.mark.parametrize("kind", ["sam2", "xmem"])
def test_random_init_wins_over_a_checkpoint_variable_for_both_mask_models(kind, tmp_path,
                                                                        monkeypatch):
    """A function yaml sets AUTOTRACK_<KIND>_CHECKPOINT; a test deployment that also sets
    AUTOTRACK_<KIND>_RANDOM_INIT=1 gets random weights from both models alike."""
    from autotrack.vos.factory import segmenter_factory

    prefix = f"AUTOTRACK_{kind.upper()}_"
    env = {prefix + "CHECKPOINT": str(tmp_path / "absent.pt"), prefix + "RANDOM_INIT": "1",
           "AUTOTRACK_SAM2_IMAGE_SIZE": "128", "AUTOTRACK_XMEM_SIZE": "64"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert segmenter_factory(kind, env)() is not None
    monkeypatch.delenv(prefix + "RANDOM_INIT")
    with pytest.raises(ModelNotFoundError, match="absent.pt"):
        segmenter_factory(kind, {k: v for k, v in env.items() if "RANDOM" not in k})
