"""A bounded load run of ``meddifffm serve``: N small jobs (default 40) from C clients at once
(default 4), every result checked against a local run of the same job, and the server's memory
followed from job to job (it must stay flat: a model is loaded once, inputs and results are dropped).

Baseline, measured in the same run: the same jobs run locally one after another in this process with
the same model already loaded (``Engine`` reused), i.e. what a client would get on its own CPU.
The jobs: denoising (2 steps, region chest) of four different small CT-like phantoms
(12x24x20 voxels, int16), with a random tiny model (``--config tiny``); the server runs on this
machine's CPU with one torch thread per process, as the client's local runs.

Usage: python -m benchmarks.server_load [--jobs 40] [--clients 4] [--save]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import REPO_ROOT
from benchmarks.common.model_setup import make_random_model
from benchmarks.common.reporting import Table, machine_info, print_header, save_results


def _phantom(seed: int) -> sitk.Image:
    """A small CT-like int16 volume: a soft-tissue ellipsoid with two lungs, in noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:12, :24, :20]
    body = ((y - 12) / 11) ** 2 + ((x - 10) / 9) ** 2 < 1
    lungs = (((y - 12) / 6) ** 2 + ((np.abs(x - 10) - 4.5) / 3) ** 2) < 1
    array = np.where(body, 40.0, -1000.0)
    array[lungs & body] = -850.0
    array += rng.normal(0, 20 + 5 * seed, array.shape)
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing((0.8, 0.7, 2.5))
    return image


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/server_load.md/.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from MedDiffFMLib.engine import Engine, EngineOptions
    from MedDiffFMLib.server.client import ServerClient
    from MedDiffFMLib.tasks.registry import task_entry

    machine = machine_info("cpu")
    print_header("server load: many small jobs from several clients", machine)
    model = make_random_model("tiny", seed=0)
    work = Path(tempfile.mkdtemp(prefix="meddifffm-load-"))
    inputs = []
    for seed in range(4):
        path = work / f"ct{seed}.nii.gz"
        sitk.WriteImage(_phantom(seed), str(path))
        inputs.append(path)
    entry = task_entry("denoise")
    options = entry.options(steps=2, region="chest")

    # Baseline: the same jobs locally, one after another, the model loaded once.
    engine = Engine(EngineOptions(model=str(model), device="cpu"), role="base")
    references, local_s = [], []
    for index in range(args.jobs):
        start = time.perf_counter()
        image = sitk.ReadImage(str(inputs[index % 4]))
        out = entry.run(engine, image, None, options, None, None)[""]
        local_s.append(time.perf_counter() - start)
        if index < 4:
            references.append(sitk.GetArrayFromImage(out))
    local_total = sum(local_s)

    # The server, on loopback, with its own token file.
    port = _free_port()
    env = dict(os.environ, MEDDIFFFM_MODELS_DIR=str(model.parent), OMP_NUM_THREADS="1",
               PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    token_file = work / "token"
    server = subprocess.Popen([sys.executable, "-m", "MedDiffFMLib.cli", "serve", "--port", str(port), "--devices",
                               "cpu", "--token-file", str(token_file), "--work-dir", str(work / "jobs"),
                               "--max-queue", str(args.jobs)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not token_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        token = token_file.read_text().strip()
        client = ServerClient(url, token)
        while time.monotonic() < deadline:
            try:
                client.info()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        rss_idle = _rss_kib(server.pid)
        rss_after: list = []  # (jobs finished, RSS KiB)
        latencies, wrong, failures = [], [], []
        lock = threading.Lock()
        counter = iter(range(args.jobs))

        def run_client(number: int) -> None:
            own = ServerClient(url, token)
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                start = time.perf_counter()
                try:
                    job = own.submit("denoise", {"steps": 2, "region": "chest"}, {"model": model.name}, (),
                                     volume=inputs[index % 4])
                    own.follow(job, lambda event: None, lambda: False)
                    folder = Path(tempfile.mkdtemp(dir=work))
                    result = sitk.ReadImage(str(own.download(job, "main", folder / "main.mha")))
                    same = np.array_equal(sitk.GetArrayFromImage(result), references[index % 4])
                except Exception as error:  # noqa: BLE001 - counted and reported
                    with lock:
                        failures.append(f"job {index}: {error}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if not same:
                        wrong.append(index)
                    rss_after.append((len(latencies), _rss_kib(server.pid)))

        start = time.perf_counter()
        threads = [threading.Thread(target=run_client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1800)
        wall = time.perf_counter() - start
        # A job's files go right after its last download is sent: give the last one a moment.
        settle = time.monotonic() + 10
        while any((work / "jobs").iterdir()) and time.monotonic() < settle:
            time.sleep(0.1)
        left_on_disk = len(list((work / "jobs").iterdir()))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    rss_after.sort()
    warm = [kib for done, kib in rss_after if done >= min(4, len(rss_after))]
    counts = np.array([done for done, _ in rss_after if done >= 4], float)
    values = np.array([kib for done, kib in rss_after if done >= 4], float)
    slope = float(np.polyfit(counts, values, 1)[0]) if len(counts) >= 2 else float("nan")
    correct = len(latencies) - len(wrong)
    table = Table(f"{args.jobs} denoising jobs (12x24x20 voxels, 2 steps, tiny model) from {args.clients} clients", [
        ("what", "run"), ("jobs", "jobs"), ("correct", "bit-identical to local"), ("wall", "wall s", "{:.1f}"),
        ("per_job", "s per job (wall / jobs)", "{:.2f}"), ("median", "median latency s", "{:.2f}"),
        ("p95", "p95 latency s", "{:.2f}")],
        note="Latency: submit + upload + queue + run + download of one job, as one client sees it.")
    table.add(what="local, one process, model loaded once (baseline)", jobs=args.jobs, correct="(reference)",
              wall=local_total, per_job=local_total / args.jobs, median=statistics.median(local_s),
              p95=float(np.percentile(local_s, 95)))
    table.add(what=f"server (1 CPU worker), {args.clients} clients at once", jobs=len(latencies),
              correct=f"{correct} of {args.jobs}", wall=wall, per_job=wall / args.jobs,
              median=statistics.median(latencies) if latencies else float("nan"),
              p95=float(np.percentile(latencies, 95)) if latencies else float("nan"))
    memory = Table("Server memory (RSS) across the run", [
        ("point", "when"), ("mib", "RSS MiB", "{:.1f}")],
        note=f"Growth from job 4 to job {args.jobs}: {slope:.1f} KiB per job (least-squares slope of RSS against "
             f"jobs done); job folders left on the server's disk after the run: {left_on_disk}.")
    memory.add(point="started, idle", mib=rss_idle / 1024)
    if rss_after:
        memory.add(point="after the 4th job (model loaded, warm)", mib=warm[0] / 1024)
        memory.add(point=f"after job {rss_after[-1][0]}", mib=rss_after[-1][1] / 1024)
        memory.add(point="highest after any job", mib=max(k for _, k in rss_after) / 1024)
    for item in (table, memory):
        item.print()
    if failures:
        print("Failures:\n  " + "\n  ".join(failures[:10]))
    if args.save:
        save_results("server_load", args, machine, None, [table, memory],
                     notes=["Jobs: denoising of four different CT-like phantoms, each result compared voxel by voxel "
                            "with the local run of the same input (same seed)."])
    return 0 if correct == args.jobs and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
