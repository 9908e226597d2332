"""Training samples from a prepared cache, as a pure function of (seed, global sample index).

Sample ``g`` uses its own generator seeded with ``(seed, g)``: the case (an epoch-wise shuffle of
the split, like DistributedSampler), the level, the crop, the flip, the intensity jitter, condition
dropout, the time step and the noise. So resuming at step ``k`` redraws exactly the samples an
uninterrupted run would have drawn, and with N processes rank ``r`` takes the indices
``(micro_step * N + r) * batch + j`` — the same global batch a single process with ``N * batch``
samples per step would draw, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..models.config import ModelConfig
from ..models.position import grid_coordinates
from .cache import CacheCase, TrainingCache
from .condition_builders import ConditionBuilder
from .multilevel import choose_box, choose_level, sample_box
from .recipe import Recipe
from .region_sampling import RegionSampler

_HU_LOW = -1024.0


@dataclass
class SampleOptions:
    """How samples are drawn (see ``TrainConfig`` for the JSON names)."""

    level_weights: Sequence[float] = (1.0, 1.0, 1.0)
    flip_lr: float = 0.5
    intensity_scale: float = 0.02
    intensity_shift: float = 0.02
    condition_dropout: float = 0.1
    lesion_focus: float = 0.8
    augment: bool = True
    timesteps: Optional[Sequence[int]] = None  # fixed time steps (validation), cycled by index
    recipe: Recipe = field(default_factory=Recipe)  # the training time-step distribution
    region_weights: Optional[dict] = None  # region -> share of samples (region_sampling.py); None: by case


class SampleSource:
    """Draws training samples from the cases of one split of a cache."""

    def __init__(
        self,
        cache: TrainingCache,
        cases: Sequence[CacheCase],
        config: ModelConfig,
        options: SampleOptions,
        seed: int,
        builder: Optional[ConditionBuilder] = None,
    ) -> None:
        self.cache = cache
        self.cases = list(cases)
        if not self.cases:
            raise ValueError("SampleSource needs at least one case")
        self.config = config
        self.options = options
        self.seed = int(seed)
        self.builder = builder
        self._perm: tuple[int, np.ndarray] | None = None
        self.regions = (RegionSampler([c.region for c in self.cases], options.region_weights, self.seed)
                        if options.region_weights else None)

    def case_for(self, index: int) -> CacheCase:
        if self.regions is not None:
            return self.cases[self.regions.case_index(index)]
        n = len(self.cases)
        epoch, position = divmod(int(index), n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 7, epoch]).permutation(n))
        return self.cases[int(self._perm[1][position])]

    def _to_model(self, case: CacheCase):
        level, width = self.config.window_for(case.region)
        low, high = level - width / 2.0, level + width / 2.0
        if case.window is not None:
            c_low, c_width = case.window[0] - case.window[1] / 2.0, case.window[1]

            def convert(raw: np.ndarray) -> np.ndarray:
                hu = raw.astype(np.float32) * np.float32(c_width / 255.0) + np.float32(c_low)
                return np.clip((hu - level) / (width / 2.0), -1.0, 1.0).astype(np.float32)
        else:

            def convert(raw: np.ndarray) -> np.ndarray:
                hu = np.clip(raw.astype(np.float32), low, high)
                return ((hu - level) / (width / 2.0)).astype(np.float32)

        return convert

    def sample(self, index: int) -> dict:
        """One sample: arrays in model units on the patch grid, plus its labels and noise."""
        opts = self.options
        rng = np.random.default_rng([self.seed, int(index)])
        case = self.case_for(index)
        arrays = self.cache.arrays(case)
        model_spacing = self.config.spacing_mm
        model_shape = case.model_shape_for(model_spacing)
        level = choose_level(opts.level_weights, rng)
        flip = bool(opts.augment and rng.random() < opts.flip_lr)
        focus = None
        if self.builder is not None and self.builder.needs_lesion and "lesion" in arrays and level > 0 \
                and rng.random() < opts.lesion_focus:
            focus = self._lesion_point(arrays["lesion"], case, model_spacing, rng)
        box = choose_box(level, model_shape, self.config.patch_size, rng, focus=focus, flip_x=flip)
        image = sample_box(arrays["image"], box, case.spacing_mm, model_spacing, convert=self._to_model(case), pad=-1.0)
        if opts.augment and (opts.intensity_scale or opts.intensity_shift):
            scale = 1.0 + rng.uniform(-opts.intensity_scale, opts.intensity_scale)
            shift = rng.uniform(-opts.intensity_shift, opts.intensity_shift)
            image = np.clip(image * np.float32(scale) + np.float32(shift), -1.0, 1.0)
        sample: dict = {
            "image": image.astype(np.float32),
            "starts": box.starts,
            "stops": box.stops,
            "model_shape": box.model_shape,
            "level": level,
            "flip": flip,
            "case": case.id,
        }
        region = self.config.region_index(case.region) if case.region in self.config.regions else 0
        dropout = opts.condition_dropout
        sample["region"] = 0 if rng.random() < dropout else region
        anatomy = None
        if self.config.anatomy_channels and "anatomy" in arrays:
            anatomy = sample_box(arrays["anatomy"], box, case.spacing_mm, model_spacing, nearest=True, pad=0.0)
        if rng.random() < dropout:
            anatomy = None
        sample["anatomy"] = anatomy.astype(np.uint8) if anatomy is not None else np.zeros(box.shape, np.uint8)
        if "lesion" in arrays:
            soft = sample_box(arrays["lesion"], box, case.spacing_mm, model_spacing, pad=0.0)
            sample["lesion"] = (soft >= 0.5).astype(np.uint8)
        else:
            sample["lesion"] = np.zeros(box.shape, np.uint8)
        if self.builder is not None:
            sample["control"] = self.builder.build(sample, rng).astype(np.float32)
        if opts.timesteps:
            sample["timestep"] = int(opts.timesteps[int(index) % len(opts.timesteps)])
        else:
            sample["timestep"] = opts.recipe.sample_timestep(rng, self.config.num_train_timesteps)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        sample["noise"] = torch.randn((1, *box.shape), generator=gen)
        return sample

    def _lesion_point(self, lesion: np.ndarray, case: CacheCase, model_spacing, rng) -> Optional[tuple]:
        points = np.argwhere(np.asarray(lesion) > 0)
        if points.size == 0:
            return None
        point = points[int(rng.integers(0, len(points)))]
        # Cache index -> model-grid index.
        return tuple(float(p) * c / t for p, c, t in zip(point, case.spacing_mm, model_spacing))


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch of tensors (coordinates computed as inference computes them)."""
    coords = torch.stack([
        grid_coordinates(s["starts"], s["stops"], s["image"].shape, s["model_shape"]) for s in samples
    ])
    batch = {
        "image": torch.from_numpy(np.stack([s["image"] for s in samples]))[:, None],
        "coords": coords,
        "anatomy": torch.from_numpy(np.stack([s["anatomy"] for s in samples])),
        "lesion": torch.from_numpy(np.stack([s["lesion"] for s in samples]))[:, None],
        "region": torch.tensor([s["region"] for s in samples], dtype=torch.long),
        "timestep": torch.tensor([s["timestep"] for s in samples], dtype=torch.long),
        "noise": torch.stack([s["noise"] for s in samples]),
        "level": torch.tensor([s["level"] for s in samples], dtype=torch.long),
        "cases": [s["case"] for s in samples],
    }
    if "control" in samples[0]:
        batch["control"] = torch.from_numpy(np.stack([s["control"] for s in samples]))
    return batch


class MicroBatchDataset(torch.utils.data.Dataset):
    """Item ``k`` is this rank's micro-batch of micro step ``k`` (a map-style dataset for DataLoader)."""

    def __init__(self, source: SampleSource, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.source = source
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)

    def indices(self, micro_step: int) -> list[int]:
        first = (int(micro_step) * self.world_size + self.rank) * self.batch_size
        return list(range(first, first + self.batch_size))

    def __len__(self) -> int:  # effectively unbounded
        return 2**62

    def __getitem__(self, micro_step: int) -> dict:
        return collate([self.source.sample(i) for i in self.indices(micro_step)])


class _CountFrom(torch.utils.data.Sampler):
    def __init__(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        k = self.start
        while True:
            yield k
            k += 1

    def __len__(self) -> int:
        return 2**62


def micro_batches(dataset: MicroBatchDataset, start_micro_step: int, num_workers: int = 0) -> Iterator[dict]:
    """Micro-batches from ``start_micro_step`` on (data workers prefetch in the background)."""
    if num_workers <= 0:
        k = int(start_micro_step)
        while True:
            yield dataset[k]
            k += 1
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=_CountFrom(start_micro_step), num_workers=num_workers,
        persistent_workers=False, prefetch_factor=2,
    )
    yield from loader


@dataclass
class ValidationSet:
    """Fixed validation batches: the same crops, time steps and noise at every evaluation."""

    batches: list[dict] = field(default_factory=list)

    @classmethod
    def build(cls, source: SampleSource, samples_per_case: int, batch_size: int) -> "ValidationSet":
        count = len(source.cases) * max(1, samples_per_case)
        samples = [source.sample(i) for i in range(count)]
        return cls([collate(samples[i:i + batch_size]) for i in range(0, count, batch_size)])
