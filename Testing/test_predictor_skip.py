"""The CPU path of issue 40: the body-only patch skip gives the full path's answer, the engine sets
the CPU thread count, and the CPU runtime keeps the network's answer unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.models import single_torch_thread, tiny_models  # noqa: F401  (fixtures)
from helpers.phantoms import air_and_body_ct
from MedDiffFMLib import device as device_module
from MedDiffFMLib.models import ConditionedModel, MedDiffFMUNet, named_config
from MedDiffFMLib.sampling import Conditions, NoiseSchedule, VolumeNoisePredictor
from MedDiffFMLib.sampling.tiling import window_count

CPU = torch.device("cpu")


def _random_model(seed: int = 0) -> ConditionedModel:
    """A tiny U-Net whose output depends on its input (MONAI zero-initialises the output layer)."""
    torch.manual_seed(seed)
    unet = MedDiffFMUNet(named_config("tiny"))
    with torch.no_grad():
        for parameter in unet.parameters():
            if not parameter.detach().abs().sum():
                parameter.normal_(0.0, 0.05)
    return ConditionedModel(unet).eval()


def _body_case(shape=(24, 60, 70)):
    """A volume whose body (two boxes in opposite corners of their bounding box) leaves whole patches
    of air inside that box and beyond it; x_t and the measurement."""
    generator = torch.Generator().manual_seed(1)
    body = torch.zeros(shape, dtype=torch.bool)
    body[4:20, 8:20, 10:22] = True
    body[4:20, 38:50, 44:56] = True
    y = torch.where(body, torch.rand(shape, generator=generator) * 0.4, torch.full(shape, -0.55))
    x = 0.99 * y[None, None] + 0.1 * torch.randn((1, 1, *shape), generator=generator)
    return body, y, x


def _predictor(model, conditions: Conditions, skip: bool, batch_size: int = 1) -> VolumeNoisePredictor:
    predictor = VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size, batch_size=batch_size)
    predictor.set_conditions(conditions)
    predictor.skip_outside_body = skip
    return predictor


@pytest.mark.parametrize("batch_size", [1, 3])
def test_body_only_skip_matches_the_full_path(batch_size):
    model = _random_model()
    body, y, x = _body_case()
    conditions = Conditions(region=1, body=body, outside=y)
    full = _predictor(model, conditions, skip=False, batch_size=batch_size)
    skip = _predictor(model, conditions, skip=True, batch_size=batch_size)
    expected, got = full(x, 40), skip(x, 40)
    assert skip.skipped > 0 and skip.evaluations + skip.skipped == full.evaluations
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Inside the body it is the network's own answer on the body's box (the tiled crop), whose patches
    # keep their whole-volume position embedding: a predictor without a mask, run on that crop, agrees.
    box = (slice(4, 20), slice(8, 50), slice(10, 56))
    plain = VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size, batch_size=batch_size,
                                 coordinate_shape=tuple(x.shape[2:]), coordinate_offset=(-4, -8, -10))
    plain.set_conditions(Conditions(region=1))
    on_box = plain(x[(slice(None), slice(None), *box)], 40)[0, 0]
    torch.testing.assert_close(got[0, 0][box][body[box]], on_box[body[box]], atol=1e-5, rtol=1e-5)
    assert plain.evaluations == full.evaluations


def test_outside_the_body_the_predicted_clean_image_is_the_known_one():
    model = _random_model(1)
    body, y, x = _body_case()
    t = 40
    eps = _predictor(model, Conditions(body=body, outside=y), skip=True)(x, t)
    x0 = NoiseSchedule.from_config(model.config).predict_x0(x, eps, t)[0, 0]
    torch.testing.assert_close(x0[~body], y[~body], atol=1e-4, rtol=0)


def test_body_and_outside_go_together():
    model = _random_model()
    body, _, _ = _body_case()
    predictor = VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size)
    with pytest.raises(ValueError, match="go together"):
        predictor.set_conditions(Conditions(body=body))


def test_denoising_keeps_the_input_outside_the_body_and_skips_its_patches(tiny_models):
    """End to end: a phantom whose body leaves air patches; only patches that touch the body run."""
    import SimpleITK as sitk

    from MedDiffFMLib import api
    from MedDiffFMLib.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(model=str(tiny_models.base), device="cpu"))
    made = []
    original = Engine.predictor

    def recording(self, *args, **kwargs):
        made.append(original(self, *args, **kwargs))
        return made[-1]

    image, hu = air_and_body_ct()
    shape = hu.shape
    Engine.predictor = recording
    try:
        out = sitk.GetArrayFromImage(api.denoise(image, engine=engine, steps=2, region="abdomen"))
    finally:
        Engine.predictor = original
    predictor = made[0]
    body = predictor.conditions.body
    assert body is not None and predictor.evaluations > 0
    # Two steps, each tiling only the body's box: fewer patches than the whole grid's tiling.
    whole = window_count(body.shape, predictor.patch_size, predictor.overlap)
    assert predictor.evaluations + predictor.skipped < 2 * whole
    far = np.zeros(shape, bool)
    far[:, :, 40:] = True  # more than the 10 mm margin beyond the body box
    np.testing.assert_allclose(out[far], hu[far], atol=0.5)


def test_engine_caps_the_threads_at_the_usable_cores(tiny_models, monkeypatch):
    from MedDiffFMLib.engine import Engine, EngineOptions

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr(device_module, "usable_cpu_count", lambda: 2)
        Engine(EngineOptions(model=str(tiny_models.base), device="cpu"))
        assert torch.get_num_threads() == 2
        Engine(EngineOptions(model=str(tiny_models.base), device="cpu", threads=3))
        assert torch.get_num_threads() == 3
        torch.set_num_threads(1)  # a lower count chosen by the caller is kept
        Engine(EngineOptions(model=str(tiny_models.base), device="cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_usable_cores_are_at_least_one_and_at_most_the_affinity():
    import os

    count = device_module.usable_cpu_count()
    assert 1 <= count <= len(os.sched_getaffinity(0))


def test_cpu_runtime_leaves_the_network_output_unchanged():
    model = _random_model(2)
    body, y, x = _body_case()
    before = _predictor(model, Conditions(region=1), skip=False)(x, 40)
    device_module.configure_cpu_runtime()
    after = _predictor(model, Conditions(region=1), skip=False)(x, 40)
    device_module.release_cpu_memory()
    torch.testing.assert_close(after, before, atol=0, rtol=0)


# --- precision: bf16 where the CPU has it (issue 40) -----------------------------------------------


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None)])
def test_auto_precision_uses_bf16_only_on_cpus_with_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert device_module.autocast_dtype(CPU, "auto") is expected
    assert device_module.autocast_dtype(CPU, "float32") is None
    assert device_module.autocast_dtype(CPU, "bfloat16") is torch.bfloat16


def test_unknown_precision_is_refused_by_name():
    from MedDiffFMLib.engine import EngineOptions
    from MedDiffFMLib.errors import InputError, MedDiffFMError

    with pytest.raises(InputError, match="--precision"):
        EngineOptions(precision="fp16").validate()
    with pytest.raises(MedDiffFMError, match="Unknown precision 'half'"):
        device_module.autocast_dtype(CPU, "half")


def test_the_command_line_precision_reaches_the_engine(tiny_models, monkeypatch):
    from MedDiffFMLib.cli import build_parser
    from MedDiffFMLib.cli.common import engine_options
    from MedDiffFMLib.engine import Engine

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    for flag, expected in ((["--precision", "float32"], None), ([], torch.bfloat16)):
        args = build_parser().parse_args(["denoise", "in.nii.gz", "out.nii.gz", "--model", str(tiny_models.base),
                                          "--device", "cpu", *flag])
        assert Engine(engine_options(args)).autocast_dtype is expected


def test_bf16_network_runs_in_bf16_and_stays_close_to_fp32():
    """The predictor's network really computes in bf16 (its convolutions return bf16), and its noise
    estimate stays within bf16's rounding of the fp32 one."""
    model = _random_model(3)
    _, _, x = _body_case()
    full = VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size)(x, 40)
    seen = []
    hook = model.unet.unet.conv_in.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        half = VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size,
                                    autocast_dtype=torch.bfloat16)(x, 40)
    finally:
        hook.remove()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert half.dtype == torch.float32
    scale = full.abs().max()
    assert (half - full).abs().max() <= 0.05 * scale
    assert not torch.equal(half, full)


# --- the position embedding made axis by axis (issue 40) -------------------------------------------


@pytest.mark.parametrize("box", [
    ([0, 0, 0], [79, 79, 79], [80, 80, 80], [300, 200, 120]),
    ([-5, 3.5, 7], [20, 40, 90], [26, 37, 84], [30, 60, 120]),  # padding beyond the image, fractional starts
    ([0, 0, 0], [0, 4, 5], [1, 5, 6], [1, 8, 9]),  # one voxel along z
])
def test_box_embedding_is_the_voxel_by_voxel_one(box):
    from MedDiffFMLib.models.position import grid_axes, grid_coordinates, grid_embedding, sinusoidal_embedding

    dense = sinusoidal_embedding(grid_coordinates(*box)[None], 4)[0]
    assert torch.equal(grid_embedding(grid_axes(*box), 4), dense)


@pytest.mark.parametrize("anatomy_channels", [0, 2])
def test_network_input_from_axes_equals_the_one_from_coordinates(anatomy_channels):
    from MedDiffFMLib.models.inputs import anatomy_one_hot, network_input
    from MedDiffFMLib.models.position import grid_axes, grid_coordinates

    config = named_config("tiny")
    config.anatomy_channels = anatomy_channels
    boxes = [([0, 0, 0], [15, 15, 15], [16, 16, 16], [40, 50, 60]),
             ([-3, 5.5, 10], [12, 20.5, 25], [16, 16, 16], [40, 50, 60])]
    x = torch.randn(2, 1, 16, 16, 16)
    labels = torch.randint(0, 4, (2, 16, 16, 16), generator=torch.Generator().manual_seed(0))
    anatomy = anatomy_one_hot(labels, anatomy_channels, x) if anatomy_channels else None
    dense = network_input(x, torch.stack([grid_coordinates(*b) for b in boxes]), anatomy, config)
    fast = network_input(x, None, anatomy, config, axes=[grid_axes(*b) for b in boxes])
    assert fast.shape == (2, config.input_channels, 16, 16, 16)
    assert torch.equal(fast, dense)
