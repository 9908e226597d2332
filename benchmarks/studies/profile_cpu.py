"""Where the CPU time of one denoising step goes: the README's main job (the bundled sample CT,
denoised with the shipped model) for ONE sampler step under ``torch.profiler``, with the process's
user and system time and page faults beside the operator table.

The table it prints (``--save``: ``benchmarks/results/profile_cpu_<name>.md``) is what chose the CPU
path's changes (issue 40). It profiles the library as it is; ``--legacy`` the CPU path before issue 40
(the speed benchmark's ``legacy`` path: batch 2, threads and allocator as they come, every patch), for
the record.

Usage: python -m benchmarks.studies.profile_cpu [--legacy] [--rows 25] [--save NAME]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import SimpleITK as sitk
import torch

from benchmarks import REPO_ROOT
from benchmarks.common.reporting import RESULTS_DIR

SAMPLE = REPO_ROOT / "Resources" / "SampleData" / "chest_ct_sample.nii.gz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--legacy", action="store_true",
                        help="the CPU path before issue 40 (the speed benchmark's legacy path)")
    parser.add_argument("--save", default=None, help="write benchmarks/results/profile_cpu_NAME.md")
    args = parser.parse_args(argv)

    from MedDiffFMLib import api
    from MedDiffFMLib.engine import Engine, EngineOptions

    if args.legacy:
        from benchmarks.speed_parts.paths import PATHS, path_engine

        PATHS["legacy"].prepare_process()  # before the engine configures the CPU runtime
    engine = Engine(EngineOptions(device="cpu"))
    if args.legacy:
        engine = path_engine(engine, "legacy", tuned={})
    image = sitk.ReadImage(str(SAMPLE))
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        api.denoise(image, engine=engine, steps=1)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    head = (f"One denoising step of the bundled sample ({'legacy path' if args.legacy else 'library path'}), "
            f"{torch.get_num_threads()} threads: wall {wall:.1f} s, user {after.ru_utime - before.ru_utime:.1f} s, "
            f"system {after.ru_stime - before.ru_stime:.1f} s, minor page faults "
            f"{after.ru_minflt - before.ru_minflt}, peak RSS {after.ru_maxrss / 2**20:.2f} GiB")
    print(head)
    print(table)
    if args.save:
        out = RESULTS_DIR / f"profile_cpu_{args.save}.md"
        out.write_text(f"# profile_cpu ({time.strftime('%Y-%m-%d %H:%M:%S')})\n\n"
                       f"Command: `python -m benchmarks.studies.profile_cpu "
                       f"{' '.join(argv or sys.argv[1:])}`\n\n{head}\n\n```\n{table}\n```\n")
        print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
