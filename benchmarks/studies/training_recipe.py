"""Training-recipe study: which choices make a short training count, each arm beside the baseline.

Every arm trains the same small model (``--model``, default a 2-level 16/32-channel U-Net on
16^3 patches at 4 mm) with the real trainer, on the same prepared cache, with the same seed, the same
samples (the data stream is a function of the seed and the sample index), the same number of steps
and batch size; only the recipe differs:

* ``baseline``: the paper (epsilon target, L1, uniform time steps);
* ``min_snr``: Min-SNR-gamma loss weighting (gamma 5);
* ``low_t``: half of the time steps drawn from [0, 250), where DiffPIR denoising starts;
* ``v``: v-prediction (L1 on v);
* ``v_low_t``, ``low_t_min_snr``: combinations.

After each stage (``--stages``, cumulative steps) the EMA weights (what is exported) are scored on
fixed held-out crops (the cache's ``val`` split, fixed crops and noise, every arm the same):

* ``gain dB @ t``: -10 log10 of the relative MSE of the implied noise, mean((eps_hat - eps)^2), at the
  small steps denoising starts from (10-60 HU in the chest and abdomen windows: t of about 2-200).
  Equal to how far (in dB) one x0 estimate reduces the noise power of x_t (0 dB: no denoising).
* ``val L1``: the trainer's validation loss, L1 of the implied noise at t = 50, 250, 500, 750, 950.

Usage (one seed per process, so two seeds use the two cores):
    python -m benchmarks.studies.training_recipe --cache .cache/ct_cache_3mm --seed 0 --save
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib

import numpy as np
import torch

from MedDiffFMLib.models.config import ModelConfig, named_config
from MedDiffFMLib.training.cache import TrainingCache
from MedDiffFMLib.training.config import TrainConfig
from MedDiffFMLib.training.dataset import SampleOptions, SampleSource, collate
from MedDiffFMLib.training.trainer import Trainer

from benchmarks.common.reporting import RESULTS_DIR

SMALL_T = (5, 15, 35, 60, 100, 200)
VAL_T = (50, 250, 500, 750, 950)

ARMS: dict[str, dict] = {
    "baseline": {},
    "min_snr": {"loss_weighting": "min_snr", "min_snr_gamma": 5.0},
    "low_t": {"timestep_sampling": "low_biased", "low_t_fraction": 0.5, "low_t_max": 250},
    "v": {"prediction_type": "v"},
    "v_low_t": {"prediction_type": "v", "timestep_sampling": "low_biased", "low_t_fraction": 0.5, "low_t_max": 250},
    "low_t_min_snr": {"loss_weighting": "min_snr", "min_snr_gamma": 5.0, "timestep_sampling": "low_biased",
                      "low_t_fraction": 0.5, "low_t_max": 250},
}


def study_model() -> ModelConfig:
    """The small model every arm trains (a 'tiny'-like 2-level U-Net, CPU-sized)."""
    data = named_config("tiny").to_dict()
    data.update(name="recipe_study", channels=(16, 32), attention_levels=(False, True), num_head_channels=16,
                norm_num_groups=8)
    return ModelConfig.from_dict(data)


def eval_crops(cache: TrainingCache, config: ModelConfig, per_case: int, seed: int) -> list[dict]:
    """Fixed held-out crops (all levels, no augmentation) with their fixed noise, collated in batches."""
    cases = cache.split("val") or cache.split("train")
    options = SampleOptions(augment=False, condition_dropout=0.0, timesteps=(0,))
    source = SampleSource(cache, cases, config, options, seed)
    samples = [source.sample(i) for i in range(len(cases) * per_case)]
    return [collate(samples[i:i + 8]) for i in range(0, len(samples), 8)]


@torch.no_grad()
def score(trainer: Trainer, crops: list[dict]) -> dict:
    """Noise-prediction errors of the run's EMA weights at every scored time step."""
    objective = trainer.objective
    model = objective.build_model()
    trainer.ema.copy_to(objective.trainable(model))
    model.eval()
    mse: dict[int, list[float]] = {}
    l1: dict[int, list[float]] = {}
    for t in sorted(set(SMALL_T) | set(VAL_T)):
        for batch in crops:
            batch = dict(batch, timestep=torch.full_like(batch["timestep"], t))
            eps = objective.predicted_noise(model, batch, torch.device("cpu"), contextlib.nullcontext)
            diff = (eps - batch["noise"]).flatten(1)
            mse.setdefault(t, []).extend(diff.pow(2).mean(1).tolist())
            l1.setdefault(t, []).extend(diff.abs().mean(1).tolist())
    return {
        "gain_db": {t: -10.0 * math.log10(float(np.mean(mse[t]))) for t in SMALL_T},
        "small_t_gain_db": -10.0 * math.log10(float(np.mean([np.mean(mse[t]) for t in SMALL_T]))),
        "val_l1": float(np.mean([np.mean(l1[t]) for t in VAL_T])),
        "val_l1_per_t": {t: float(np.mean(l1[t])) for t in VAL_T},
    }


def run_arm(name: str, args, crops: list[dict], workdir: Path) -> list[dict]:
    changes = dict(ARMS[name])
    model = study_model().to_dict()
    if "prediction_type" in changes:
        model["prediction_type"] = changes.pop("prediction_type")
    rows = []
    for steps in args.stages:
        config = TrainConfig.from_dict(dict(
            model=model, cache=str(args.cache), run_dir=str(workdir / name), seed=args.seed, max_steps=steps,
            batch_size=args.batch, lr=args.lr, warmup_steps=20, lr_schedule="constant", ema_decay=args.ema,
            val_every=0, checkpoint_every=10**9, checkpoint_minutes=10**6, keep_checkpoints=1,
            log_every=50, threads=args.threads, device="cpu", tensorboard=False, **changes))
        started = time.time()
        trainer = Trainer(config, resume=True, progress="none", export=False)
        trainer.setup()
        trainer.val_set = None  # scored below on the fixed crops instead
        result = trainer.run()
        seconds = time.time() - started
        row = {"arm": name, "seed": args.seed, "step": result.step, "samples": trainer.samples_seen,
               "train_loss": result.train_loss, "seconds": seconds, **score(trainer, crops)}
        rows.append(row)
        print(f"  {name:14s} step {row['step']:5d}: small-t gain {row['small_t_gain_db']:6.2f} dB, "
              f"val L1 {row['val_l1']:.4f} ({seconds:.0f} s)", flush=True)
    return rows


def table(rows: list[dict], arms: list[str]) -> str:
    """Markdown: each arm's figures and their difference to the baseline at the same step."""
    base = {r["step"]: r for r in rows if r["arm"] == "baseline"}
    head = ("| arm | step | samples | " + " | ".join(f"gain dB t={t}" for t in SMALL_T)
            + " | small-t gain dB | Δ vs baseline | val L1 | Δ vs baseline | "
            + " | ".join(f"val L1 t={t}" for t in VAL_T) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm in arms:
        for r in [r for r in rows if r["arm"] == arm]:
            b = base.get(r["step"])
            d_gain = f"{r['small_t_gain_db'] - b['small_t_gain_db']:+.2f}" if b else "–"
            d_val = f"{r['val_l1'] - b['val_l1']:+.4f}" if b else "–"
            lines.append(f"| {arm} | {r['step']} | {r['samples']} | "
                         + " | ".join(f"{r['gain_db'][t]:.2f}" for t in SMALL_T)
                         + f" | {r['small_t_gain_db']:.2f} | {d_gain} | {r['val_l1']:.4f} | {d_val} | "
                         + " | ".join(f"{r['val_l1_per_t'][t]:.4f}" for t in VAL_T) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/ct_cache_3mm"))
    parser.add_argument("--arms", default="baseline,min_snr,low_t,v")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", type=lambda s: [int(x) for x in s.split(",")], default=[150],
                        help="cumulative steps after which every arm is scored")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-per-case", type=int, default=12)
    parser.add_argument("--save", action="store_true",
                        help="write benchmarks/results/training_recipe_seedN_ARMS.json after every arm")
    parser.add_argument("--report", action="store_true",
                        help="only merge the saved JSON files (arms of one seed may come from several processes: "
                             "the runs are deterministic) into benchmarks/results/training_recipe.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.report:
        report()
        return
    arms = [a for a in args.arms.split(",") if a]
    cache = TrainingCache(args.cache)
    crops = eval_crops(cache, study_model(), args.eval_per_case, seed=12345)
    config = study_model()
    print(f"Model {config.name}: channels {list(config.channels)}, {config.patch_size[0]}^3 at "
          f"{config.spacing_mm[0]:g} mm; cache {args.cache} ({len(cache.split('train'))} train, "
          f"{len(cache.split('val'))} val cases); {sum(len(b['cases']) for b in crops)} scored crops; seed {args.seed}, "
          f"batch {args.batch}, lr {args.lr}, EMA {args.ema}, stages {args.stages}, torch threads {args.threads}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="meddifffm-recipe-") as tmp:
        for arm in arms:
            rows.extend(run_arm(arm, args, crops, Path(tmp)))
            if args.save:  # after every arm, so a stopped study keeps what it measured
                save(rows, arms, args)
    print()
    print(table(rows, arms))


def save(rows: list[dict], arms: list[str], args) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"training_recipe_seed{args.seed}_{'-'.join(arms)}.json"
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


def report() -> None:
    """Merge every saved study file into one Markdown report, per seed, arms beside the baseline."""
    files = sorted(RESULTS_DIR.glob("training_recipe_seed*.json"))
    runs = [json.loads(f.read_text()) for f in files]
    rows = [r for run in runs for r in run["rows"]]
    for r in rows:  # JSON keys are strings
        r["gain_db"] = {int(k): v for k, v in r["gain_db"].items()}
        r["val_l1_per_t"] = {int(k): v for k, v in r["val_l1_per_t"].items()}
    arms = [a for a in ARMS if any(r["arm"] == a for r in rows)]
    parts = [f"# Training recipe study ({time.strftime('%Y-%m-%d')})", "",
             "Command: `python -m benchmarks.studies.training_recipe --seed S --arms ... --stages 150 --save` "
             "(then `--report`). Settings of the runs:", ""]
    keys = ("seed", "stages", "batch", "lr", "ema", "threads")
    parts += [f"- `{f.name}`: arms " + ",".join(r["arm"] for r in run["rows"]) + "; "
              + ", ".join(f"{k}={run['args'][k]}" for k in keys) for f, run in zip(files, runs)]
    for seed in sorted({r["seed"] for r in rows}):
        parts += ["", f"## Seed {seed}", "", table([r for r in rows if r["seed"] == seed], arms)]
    text = "\n".join(parts) + "\n"
    (RESULTS_DIR / "training_recipe.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
