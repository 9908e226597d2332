"""The whole-volume sampler: blending, batching, position embedding, determinism, progress, cancel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from MedDiffFMLib.errors import CancelledError, ResourceError
from MedDiffFMLib.models import ConditionedModel, MedDiffFMUNet, named_config
from MedDiffFMLib.models.position import grid_coordinates
from MedDiffFMLib.sampling import (
    VolumeNoisePredictor,
    prepare_timesteps,
    run_sampler,
    sampling_scheduler,
    step_for_noise,
    noise_to_signal,
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


def test_timesteps_start_at_or_below_the_start_step():
    scheduler = sampling_scheduler(named_config("tiny"))
    full = prepare_timesteps(scheduler, 20)
    assert len(full) == 20 and full[0] == 999 and full[-1] == 0
    partial = prepare_timesteps(scheduler, 8, start_step=300)
    assert partial[0] <= 300 and partial[-1] == 0 and 7 <= len(partial) <= 9
    assert all(a > b for a, b in zip(partial, partial[1:]))


def test_timesteps_honour_the_start_and_count_with_few_steps():
    scheduler = sampling_scheduler(named_config("tiny"))
    assert prepare_timesteps(scheduler, 1, start_step=950) == [950]
    assert prepare_timesteps(scheduler, 2, start_step=950) == [950, 0]
    assert prepare_timesteps(scheduler, 2) == [999, 0]
    assert prepare_timesteps(scheduler, 5, start_step=4) == [4, 3, 2, 1, 0]
    assert prepare_timesteps(scheduler, 50, start_step=4) == [4, 3, 2, 1, 0]
    for steps, start in [(3, 500), (20, 950), (7, 6), (50, None)]:
        visited = prepare_timesteps(scheduler, steps, start_step=start)
        assert len(visited) == steps and visited[-1] == 0
        assert all(a > b for a, b in zip(visited, visited[1:]))


def test_ddim_step_lands_on_the_requested_noise_level():
    from MedDiffFMLib.sampling import add_noise, alpha_bar, ddim_step

    scheduler = sampling_scheduler(named_config("tiny"))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 6, 6, 6) * 1.6 - 0.8
    noise = torch.randn(x0.shape, generator=generator)
    t, t_prev = 700, 120  # a jump MONAI's step would compute as 700 -> 699 with 1000 inference steps
    a_t, a_prev = alpha_bar(scheduler, t), alpha_bar(scheduler, t_prev)
    x_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * noise
    # With the true noise, DDIM (eta 0) moves exactly along q(x_t | x0).
    expected = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * noise
    torch.testing.assert_close(ddim_step(scheduler, noise, t, t_prev, x_t), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(ddim_step(scheduler, noise, t, -1, x_t), x0, atol=1e-4, rtol=0)
    # Where MONAI's own step is consistent (1000 inference steps: t -> t - 1) the two agree.
    scheduler.set_timesteps(1000)
    x_500 = add_noise(scheduler, x0, 500, torch.Generator().manual_seed(3))
    monai_prev, _ = scheduler.step(noise, 500, x_500)
    torch.testing.assert_close(ddim_step(scheduler, noise, 500, 499, x_500), monai_prev, atol=1e-5, rtol=1e-5)


def test_noise_level_maps_to_the_matching_step():
    scheduler = sampling_scheduler(named_config("tiny"))
    t = step_for_noise(scheduler, 0.2)
    assert abs(noise_to_signal(scheduler, t) - 0.2) < 0.02
    assert step_for_noise(scheduler, 0.0) == 0


def _sample(seed, progress=None, cancel=None, eta=1.0):
    model = _tiny_model()
    scheduler = sampling_scheduler(model.config)
    steps = prepare_timesteps(scheduler, 4)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, 16, 20, 18, generator=generator)
    return run_sampler(_predictor(model), scheduler, x, steps, eta=eta, generator=generator, progress=progress,
                       cancel=cancel)


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


def test_hooks_see_every_step_and_can_pin_the_result():
    model = _tiny_model()
    scheduler = sampling_scheduler(model.config)
    steps = prepare_timesteps(scheduler, 3)
    target = torch.full((1, 1, 16, 16, 16), 0.25)
    seen = []
    from MedDiffFMLib.sampling import SamplingHooks

    hooks = SamplingHooks(x0_transform=lambda x0, t, xt: (seen.append(t), target)[1])
    out = run_sampler(_predictor(model), scheduler, torch.randn(1, 1, 16, 16, 16), steps, hooks=hooks)
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
