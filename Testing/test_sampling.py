"""The whole-volume sampler: blending, batching, position embedding, determinism, progress, cancel."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from MedDiffFMLib.errors import CancelledError, ResourceError
from MedDiffFMLib.models import ConditionedModel, MedDiffFMUNet, named_config
from MedDiffFMLib.models.position import grid_coordinates
from MedDiffFMLib.sampling import (
    DDIMSampler,
    DPMSolverPP2MSampler,
    NoiseSchedule,
    SamplingHooks,
    VolumeNoisePredictor,
    make_sampler,
    run_sampler,
    sampler_for,
)

CPU = torch.device("cpu")


class ChannelEcho(nn.Module):
    """Returns one input channel (or a constant): lets tests see exactly what each patch was given."""

    def __init__(self, config, channel=None, constant=0.0):
        super().__init__()
        self.config, self.channel, self.constant = config, channel, constant
        self.batches = []

    def forward(self, inputs, t, region, condition=None):
        self.batches.append(inputs.shape[0])
        if self.channel is None:
            return torch.full_like(inputs[:, :1], self.constant)
        return inputs[:, self.channel : self.channel + 1]


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return ConditionedModel(MedDiffFMUNet(named_config("tiny"))).eval()


def _predictor(model, batch_size=2, overlap=0.25):
    return VolumeNoisePredictor(model, device=CPU, patch_size=model.config.patch_size, batch_size=batch_size,
                                overlap=overlap)


def test_constant_model_output_blends_to_a_seam_free_constant():
    model = ChannelEcho(named_config("tiny"), constant=0.37)
    out = _predictor(model)(torch.randn(1, 1, 21, 37, 30), 500)
    torch.testing.assert_close(out, torch.full_like(out, 0.37), atol=1e-5, rtol=0)


def test_position_embedding_is_the_crop_of_the_whole_volume_embedding():
    config = named_config("tiny")
    shape = (21, 37, 30)
    whole = grid_coordinates((0, 0, 0), [s - 1 for s in shape], shape, shape)
    for axis in range(3):  # channels 1..3 of the model input are the raw z, y, x coordinates
        out = _predictor(ChannelEcho(config, channel=1 + axis))(torch.zeros(1, 1, *shape), 10)
        torch.testing.assert_close(out[0, 0], whole[axis], atol=1e-5, rtol=0)
    assert whole.min() == -1 and whole.max() == 1


def test_result_does_not_depend_on_the_patch_batch_size():
    model = _tiny_model()
    x = torch.randn(1, 1, 20, 33, 26, generator=torch.Generator().manual_seed(3))
    one = _predictor(model, batch_size=1)(x, 400)
    many = _predictor(model, batch_size=5)(x, 400)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-4)


def test_patches_run_in_batches_of_the_requested_size():
    model = ChannelEcho(named_config("tiny"), constant=0.0)
    _predictor(model, batch_size=3)(torch.zeros(1, 1, 32, 32, 32), 1)
    assert max(model.batches) == 3


def _ddim(config=None, eta=0.0):
    return DDIMSampler(NoiseSchedule.from_config(config or named_config("tiny")), eta=eta)


def test_timesteps_start_at_or_below_the_start_step():
    sampler = _ddim()
    full = sampler.set_timesteps(20)
    assert len(full) == 20 and full[0] == 999 and full[-1] == 0
    partial = sampler.set_timesteps(8, start_step=300)
    assert partial[0] <= 300 and partial[-1] == 0 and 7 <= len(partial) <= 9
    assert all(a > b for a, b in zip(partial, partial[1:]))
    assert sampler.timesteps == partial


def test_timesteps_honour_the_start_and_count_with_few_steps():
    sampler = _ddim()
    assert sampler.set_timesteps(1, start_step=950) == [950]
    assert sampler.set_timesteps(2, start_step=950) == [950, 0]
    assert sampler.set_timesteps(2) == [999, 0]
    assert sampler.set_timesteps(5, start_step=4) == [4, 3, 2, 1, 0]
    assert sampler.set_timesteps(50, start_step=4) == [4, 3, 2, 1, 0]
    for steps, start in [(3, 500), (20, 950), (7, 6), (50, None)]:
        visited = sampler.set_timesteps(steps, start_step=start)
        assert len(visited) == steps and visited[-1] == 0
        assert all(a > b for a, b in zip(visited, visited[1:]))


def test_ddim_step_lands_on_the_requested_noise_level():
    from monai.networks.schedulers import DDIMScheduler

    sampler = _ddim()
    schedule = sampler.schedule
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 6, 6, 6) * 1.6 - 0.8
    noise = torch.randn(x0.shape, generator=generator)
    t, t_prev = 700, 120  # a jump MONAI's step would compute as 700 -> 699 with 1000 inference steps
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    x_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * noise
    # With the true noise, DDIM (eta 0) moves exactly along q(x_t | x0).
    expected = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * noise
    torch.testing.assert_close(sampler.step(noise, t, t_prev, x_t), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(sampler.step(noise, t, -1, x_t), x0, atol=1e-4, rtol=0)
    # Where MONAI's own step is consistent (1000 inference steps: t -> t - 1) the two agree.
    monai = DDIMScheduler(num_train_timesteps=1000, schedule="cosine", clip_sample=True, set_alpha_to_one=True)
    monai.set_timesteps(1000)
    x_500 = schedule.add_noise(x0, 500, torch.Generator().manual_seed(3))
    monai_prev, _ = monai.step(noise, 500, x_500)
    torch.testing.assert_close(sampler.step(noise, 500, 499, x_500), monai_prev, atol=1e-5, rtol=1e-5)


def test_dpm_solver_follows_the_exact_trajectory_and_is_second_order():
    schedule = NoiseSchedule.from_config(named_config("tiny"))
    # float64: at t = 999 alpha is 5e-5, so a float32 x0 round trip alone would cost 1e-3.
    x0 = torch.rand(1, 1, 6, 6, 6, dtype=torch.float64) * 1.6 - 0.8
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    solver = DPMSolverPP2MSampler(schedule)
    steps = solver.set_timesteps(6)
    # With the true noise every x0 prediction is x0 itself: the solver stays on q(x_t | x0).
    x = schedule.alpha(steps[0]) * x0 + schedule.sigma(steps[0]) * noise
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        eps = schedule.noise_for_x0(x, x0, t)
        x = solver.step(eps, t, t_prev, x)
        if t_prev >= 0:
            expected = schedule.alpha(t_prev) * x0 + schedule.sigma(t_prev) * noise
            torch.testing.assert_close(x, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(x, x0, atol=1e-9, rtol=0)


def test_dpm_solver_converges_faster_than_ddim_on_a_linear_denoiser():
    # For Gaussian data x0 ~ N(0, s^2) the exact denoiser is known in closed form and the probability-flow
    # ODE keeps x_t / sqrt(alpha_t^2 s^2 + sigma_t^2) constant, so its end point is known. With scales
    # from 0.01 to 0.5 (CT detail to organ contrast in model units), DPM-Solver++ must land far closer
    # to it than DDIM in few steps.
    schedule = NoiseSchedule.from_config(named_config("tiny"))
    scale = torch.logspace(-2, math.log10(0.5), 32, dtype=torch.float64).view(1, 1, 32, 1, 1)
    x_T = torch.randn(1, 1, 32, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def relative_error(sampler, steps):
        timesteps = sampler.set_timesteps(steps)
        x = x_T.clone()
        for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
            a, sig = schedule.alpha(t), schedule.sigma(t)
            x0 = a * scale**2 / (a**2 * scale**2 + sig**2) * x  # E[x0 | x_t]
            x = sampler.step(schedule.noise_for_x0(x, x0, t), t, t_prev, x)
        a_T, sig_T = schedule.alpha(999), schedule.sigma(999)
        exact = scale * x_T / (a_T**2 * scale**2 + sig_T**2) ** 0.5
        return float(((x - exact) / scale).pow(2).mean().sqrt())

    for steps in (5, 10, 20):
        ddim = relative_error(DDIMSampler(schedule), steps)
        dpm = relative_error(DPMSolverPP2MSampler(schedule), steps)
        assert dpm < 0.6 * ddim, (steps, dpm, ddim)


def test_samplers_come_from_the_config_and_refuse_unknown_names():
    config = named_config("tiny")
    assert isinstance(sampler_for(config), type(make_sampler(config.sampler, NoiseSchedule())))
    assert isinstance(sampler_for(config, "dpmpp_2m"), DPMSolverPP2MSampler)
    from MedDiffFMLib.errors import InputError

    with pytest.raises(InputError, match="Unknown sampler"):
        sampler_for(config, "euler")
    with pytest.raises(InputError, match="deterministic"):
        sampler_for(config, "dpmpp_2m", eta=0.5)


def test_noise_level_maps_to_the_matching_step():
    schedule = NoiseSchedule.from_config(named_config("tiny"))
    t = schedule.step_for_noise(0.2)
    assert abs(schedule.noise_to_signal(t) - 0.2) < 0.02
    assert schedule.step_for_noise(0.0) == 0


def _sample(seed, progress=None, cancel=None, eta=1.0):
    model = _tiny_model()
    sampler = _ddim(model.config, eta=eta)
    sampler.set_timesteps(4)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, 16, 20, 18, generator=generator)
    return run_sampler(_predictor(model), sampler, x, generator=generator, progress=progress, cancel=cancel)


def test_sampling_is_deterministic_with_a_seed():
    torch.testing.assert_close(_sample(7), _sample(7), atol=0, rtol=0)
    assert not torch.equal(_sample(7), _sample(8))


def test_progress_reaches_the_total_and_cancel_stops_within_one_step():
    events = []
    _sample(0, progress=events.append)
    assert events[0].step == 0 and events[-1].step == events[-1].total == 4
    seen = []

    def cancel_after_two():
        return len(seen) >= 2

    with pytest.raises(CancelledError):
        _sample(0, progress=lambda e: seen.append(e) if e.step else None, cancel=cancel_after_two)
    assert len(seen) == 2


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_hooks_see_every_step_and_can_pin_the_result(name):
    model = _tiny_model()
    sampler = sampler_for(model.config, name)
    steps = sampler.set_timesteps(3)
    target = torch.full((1, 1, 16, 16, 16), 0.25)
    seen = []
    hooks = SamplingHooks(x0_transform=lambda x0, t, xt: (seen.append(t), target)[1])
    out = run_sampler(_predictor(model), sampler, torch.randn(1, 1, 16, 16, 16), hooks=hooks)
    assert seen == steps
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)


def test_out_of_memory_retries_with_smaller_batches_then_explains():
    config = named_config("tiny")

    class OomAboveOne(ChannelEcho):
        def forward(self, inputs, t, region, condition=None):
            if inputs.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return super().forward(inputs, t, region, condition)

    predictor = _predictor(OomAboveOne(config, constant=1.0), batch_size=4)
    out = predictor(torch.zeros(1, 1, 32, 32, 32), 5)
    assert predictor.batch_size == 1 and torch.allclose(out, torch.ones_like(out))

    class AlwaysOom(ChannelEcho):
        def forward(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(ResourceError, match="ran out of memory"):
        _predictor(AlwaysOom(config), batch_size=2)(torch.zeros(1, 1, 16, 16, 16), 5)


def _reference_ddim(predictor, x, timesteps, eta, generator, x0_transform=None):
    # DDIM eq. 12 written out independently of MedDiffFMLib.sampling (the maths before the sampler
    # interface): outputs of the interface must match it to >= 90 dB.
    from monai.networks.schedulers import DDIMScheduler

    abar = DDIMScheduler(num_train_timesteps=1000, schedule="cosine").alphas_cumprod
    a = lambda t: 1.0 if t < 0 else float(abar[t])  # noqa: E731
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        eps = predictor(x, t)
        x0 = ((x - math.sqrt(1 - a(t)) * eps) / math.sqrt(a(t))).clamp(-1, 1)
        if x0_transform is not None:
            x0 = x0_transform(x0, t, x)
            eps = (x - math.sqrt(a(t)) * x0) / math.sqrt(max(1 - a(t), 1e-12))
            x0 = ((x - math.sqrt(1 - a(t)) * eps) / math.sqrt(a(t))).clamp(-1, 1)
        var = (1 - a(t_prev)) / max(1 - a(t), 1e-12) * (1 - a(t) / a(t_prev))
        std = eta * math.sqrt(max(var, 0.0))
        x = math.sqrt(a(t_prev)) * x0 + math.sqrt(max(1 - a(t_prev) - std**2, 0.0)) * eps
        if std > 0:
            x = x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


@pytest.mark.parametrize("eta,hook", [(0.0, False), (1.0, False), (0.0, True)])
def test_ddim_through_the_interface_matches_the_reference_maths(eta, hook):
    model = _tiny_model()
    sampler = _ddim(model.config, eta=eta)
    timesteps = sampler.set_timesteps(4)
    x = torch.randn(1, 1, 16, 20, 18, generator=torch.Generator().manual_seed(5))
    y = torch.rand(x.shape) * 2 - 1
    transform = (lambda x0, t, xt: 0.5 * (x0 + y)) if hook else None
    ours = run_sampler(_predictor(model), sampler, x.clone(), generator=torch.Generator().manual_seed(9),
                       hooks=SamplingHooks(x0_transform=transform))
    reference = _reference_ddim(_predictor(model), x.clone(), timesteps, eta, torch.Generator().manual_seed(9), transform)
    mse = float((ours - reference).pow(2).mean())
    psnr = 10 * math.log10(4.0 / max(mse, 1e-30))  # model units span 2
    assert psnr >= 90.0, psnr


def test_model_configs_record_the_prediction_type_and_sampler_and_old_ones_load():
    from MedDiffFMLib.errors import ModelError
    from MedDiffFMLib.models import ModelConfig

    data = named_config("tiny").to_dict()
    assert data["prediction_type"] == "epsilon" and data["sampler"] in ("ddim", "dpmpp_2m")
    old = {k: v for k, v in data.items() if k not in ("prediction_type", "sampler")}
    loaded = ModelConfig.from_dict(old)
    assert loaded.prediction_type == "epsilon" and loaded.sampler == data["sampler"]
    with pytest.raises(ModelError, match="prediction_type"):
        ModelConfig.from_dict({**data, "prediction_type": "v_prediction"})
