"""Speed and memory of MedDiffFM, every figure beside a naive baseline measured in the same run.

Naive baseline: MONAI's ``SlidingWindowInferer`` wrapped around the same network once per sampler
step, fp32, one patch at a time (``sw_batch_size=1``), overlap 0.5, Gaussian blending, the whole
volume's position embedding computed once and cut with each patch, the same task code, steps and
seed (only ``Engine.predictor`` is swapped). "fast" is the library as shipped (its Engine defaults,
bf16 on a CPU with native bf16); "fp32" is the same with ``--precision float32``;
"tuned" is the library with the changes this script recommends, chosen by measurement in section 1
and applied from outside the library: the attention implementation (MONAI's einsum or torch's
``scaled_dot_product_attention``), channels-last 3D weights and the patch batch of the fastest
variant whose output matches the naive one (ties within 3 % go to the smallest change). "legacy" is
the library's CPU path before issue 40, run in its own process: patch batch 2, PyTorch's thread
count and glibc's allocator left as they come (no :func:`MedDiffFMLib.device.configure_cpu_runtime`),
no body-only patch skip, fp32; the e2e table gives every path's wall, user and system time, peak memory
and PSNR against it (``--paths legacy,fp32,fast --e2e-image Resources/SampleData/chest_ct_sample.nii.gz``:
the README's main job, old path beside new).

Sections:
1. per network evaluation (one patch of a real CT resampled to the model spacing): seconds/patch,
   Mvox/s, FLOPs (``torch.utils.flop_counter.FlopCounterMode``), on GPU the fraction of the bf16 peak;
2. end to end per task (read, preprocess, sample, write) on a real CT crop (default: lidc_chest_1mm,
   256x256x128 voxels at 1 mm), each run in a fresh process: seconds split by stage, patches per
   step, peak memory (process RSS on CPU via VmHWM; ``torch.cuda.max_memory_allocated`` on GPU) and
   the PSNR of each path's output against the naive one (target >= 45 dB);
3. memory against volume size (two sizes, ratio);
4. a synthetic CT-like 512x512x300 volume at 0.8x0.8x1.5 mm: measured end to end on GPU; on CPU
   (hours) estimated = everything but the network measured for real (the network replaced by a
   stub returning zeros: tiling, position embedding, blending, sampler, I/O) + patches x the
   per-patch network time of section 1, marked "est.";
5. the targets and where we stand.

``--quick`` runs fewer sampler steps than the task defaults and projects the per-step time to the
default steps (marked "proj."); without it the default steps run for real.

The paths are rows of ``benchmarks.speed_parts.paths.PATHS`` (a new path is one entry there); the
sections live in ``benchmarks/speed_parts/``; this file reads the command line and runs them in order.

Usage: python -m benchmarks.speed [--quick] [--model PATH | --config default] [--tasks denoise,...] [--save]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import SimpleITK as sitk

from benchmarks.common import cli_options, model_setup, reporting, timing
from benchmarks.speed_parts.end_to_end import end_to_end_section, memory_section
from benchmarks.speed_parts.inputs import real_ct
from benchmarks.speed_parts.large_volume import large_volume_section, task_memory_section
from benchmarks.speed_parts.network import network_section
from benchmarks.speed_parts.paths import PATHS
from benchmarks.speed_parts.runs import CONTROLNET_TASKS, TASKS, IsolatedRunner, child_main
from benchmarks.speed_parts.targets import targets_section

DEFAULT_PATHS = [name for name, variant in PATHS.items() if variant.default]


def parse_size(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give x,y,z")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_options.add_common_args(parser, ["lidc_chest_1mm"], ["lidc_chest_1mm"])
    parser.add_argument("--e2e-case", default="lidc_chest_1mm", help="real CT for sections 1-3")
    parser.add_argument("--e2e-size", type=parse_size, default=(256, 256, 128), help="x,y,z voxels of its crop")
    parser.add_argument("--e2e-spacing", type=float, default=None, help="resample the case to this spacing (mm) first")
    parser.add_argument("--small-size", type=parse_size, default=(128, 128, 64),
                        help="second size for the memory check")
    parser.add_argument("--tasks", default=None, help="comma-separated of " + ",".join(TASKS)
                        + " (default: denoise on CPU, all on GPU; 'none' skips sections 2 and 3)")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help="comma-separated paths (default: " + ",".join(DEFAULT_PATHS) + "); of: "
                        + "; ".join(f"{name}: {variant.description}" for name, variant in PATHS.items()))
    parser.add_argument("--e2e-image", default=None, help="a CT file for sections 1-3 instead of the --e2e-case "
                        "crop (e.g. Resources/SampleData/chest_ct_sample.nii.gz, the README's main job)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps to run (default: each task's default; --quick: 2, anomaly 3)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timing rounds in section 1 (default 3, quick 2)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="end-to-end runs per task and path, alternating paths; the fastest is kept")
    parser.add_argument("--big", choices=["auto", "full", "estimate", "skip"], default="auto",
                        help="512x512x300 synthetic: full run (GPU default), estimate (CPU default) or skip")
    parser.add_argument("--superres-model", default=None, help="superres ControlNet folder (superres task)")
    parser.add_argument("--lesion-model", default=None, help="lesion ControlNet folder (lesion task)")
    parser.add_argument("--big-size", type=parse_size, default=(512, 512, 300),
                        help="x,y,z voxels of the synthetic volume (at 0.8x0.8x1.5 mm)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--memory-all", choices=["auto", "run", "skip"], default="auto",
                        help="section 6, peak memory of every task (1 step, library path) on a synthetic volume of "
                             "--memory-size: run (GPU default) or skip (CPU default)")
    parser.add_argument("--memory-tasks", default=",".join(TASKS), help="tasks of section 6 (default: all)")
    parser.add_argument("--memory-size", type=parse_size, default=(512, 512, 512),
                        help="x,y,z voxels of section 6's synthetic volume (at 0.8 mm isotropic)")
    return parser


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def check_choices(parser: argparse.ArgumentParser, args, gpu: bool) -> tuple[list[str], list[str], list[str]]:
    """The tasks of section 2, the tasks of section 6 (empty when it does not run) and the paths."""
    tasks = split_list(args.tasks or ("all" if gpu else "denoise"))
    tasks = list(TASKS) if tasks == ["all"] else [] if tasks == ["none"] else tasks
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}, all or none")
    memory_tasks = split_list(args.memory_tasks)
    if any(t not in TASKS for t in memory_tasks):
        parser.error(f"--memory-tasks: choose from {', '.join(TASKS)}")
    if not (args.memory_all == "run" or (args.memory_all == "auto" and gpu)):
        memory_tasks = []
    paths = split_list(args.paths)
    if any(p not in PATHS for p in paths):
        parser.error(f"--paths: choose from {', '.join(PATHS)}")
    return tasks, memory_tasks, paths


def controlnet_runners(tasks: list[str], args, tuned: dict, work: Path, notes: list[str]) -> dict[str, IsolatedRunner]:
    """A runner per ControlNet task with its model (``--superres-model``, ``--lesion-model``, else the
    registry's or a random one with ``--config``); a task without one is left out, with a line saying so."""
    runners: dict[str, IsolatedRunner] = {}
    for task in [t for t in dict.fromkeys(tasks) if t in CONTROLNET_TASKS]:
        explicit = getattr(args, f"{task}_model")
        role_model = model_setup.resolve_bench_model(
            argparse.Namespace(model=explicit, config=None if explicit else args.config), role=task)
        if not role_model.available:
            print(f"{task}: not available ({role_model.reason}).")
            continue
        notes.append(f"{task} model: {role_model.describe()}.")
        runners[task] = IsolatedRunner(role_model.ref, task, args.device, args.threads, tuned, work)
    return runners


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    parser = build_parser()
    args = parser.parse_args(argv)
    cli_options.setup_threads(args)
    machine = reporting.machine_info(args.device)
    model = model_setup.resolve_bench_model(args)
    reporting.print_header("Speed and memory (every figure beside the naive baseline of the same run)", machine, model)
    if not model.available:
        print(f"MedDiffFM: not available ({model.reason}). Nothing to time.")
        return 2
    print("Speed does not depend on the weights: an untrained model times like a trained one of its config.")

    engine, load_s = timing.timed(lambda: model_setup.make_engine(model, args.device))
    gpu = engine.device.type == "cuda"
    tasks, memory_tasks, paths = check_choices(parser, args, gpu)
    rounds = args.rounds or (2 if args.quick else 3)
    print(f"Model loaded in {load_s:.1f} s on {engine.device}; patch {engine.config.patch_size}, spacing "
          f"{engine.config.spacing_mm} mm; library batch {engine.options.batch_size or '(default)'}, "
          f"overlap {engine.options.overlap}.", flush=True)

    work = model_setup.temporary_folder("meddifffm-speed-")
    image = (sitk.ReadImage(args.e2e_image) if args.e2e_image
             else real_ct(args.e2e_case, args.e2e_size, args.e2e_spacing))
    args.e2e_name = Path(args.e2e_image).name if args.e2e_image else args.e2e_case
    tables: list[reporting.Table] = []
    notes: list[str] = [f"Model load {load_s:.1f} s.",
                        f"Real CT: {args.e2e_name} {'x'.join(map(str, image.GetSize()))} voxels at "
                        f"{', '.join(f'{s:.2f}' for s in image.GetSpacing())} mm."]

    def show(table: reporting.Table) -> None:
        table.print()
        tables.append(table)

    net_table, net = network_section(engine, image, args, rounds)  # 1. one network evaluation
    show(net_table)
    notes.append(f"Tuned path = '{net.chosen.name}' (fastest variant whose output matches the naive one).")
    print(notes[-1])
    runner = IsolatedRunner(model.ref, "base", args.device, args.threads, net.tuned, work)
    role_runners = controlnet_runners(tasks + memory_tasks, args, net.tuned, work, notes)

    e2e_table, results = end_to_end_section(image, args.e2e_name, tasks, paths, args, work, runner, role_runners)
    show(e2e_table)  # 2. end to end
    memory_ratio = None
    if "denoise" in tasks and not args.e2e_image:  # 3. memory against size
        mem_table, memory_ratio = memory_section(image, args.e2e_name, paths, args, work, runner, results, gpu)
        show(mem_table)
    big_mode = args.big if args.big != "auto" else ("full" if gpu else "estimate")
    big_results: dict = {}
    if big_mode != "skip":  # 4. the 512x512x300 synthetic volume
        big_table, big_results = large_volume_section(args, paths, work, runner, net, results, big_mode)
        show(big_table)
    memory_rows: list = []
    if memory_tasks:  # 6. peak memory of every task on a large volume
        task_table, memory_rows = task_memory_section(args, memory_tasks, work, runner, role_runners)
        show(task_table)
    show(targets_section(results, big_results, memory_rows, paths, "x".join(map(str, image.GetSize())),
                         memory_ratio, args.memory_size, gpu))  # 5. targets
    if args.save:
        reporting.save_results("speed", args, machine, model, tables, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
