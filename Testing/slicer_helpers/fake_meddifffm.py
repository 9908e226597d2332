#!/usr/bin/env python
"""A stand-in for the ``meddifffm`` command with the same arguments and ``--progress json``
protocol, fast and model-free, for testing the Slicer module.

Its parser is the real one: rebuilt from ``FAKE_MEDDIFFFM_PARSER`` (the JSON the test session
writes from ``MedDiffFMLib.cli.build_parser()``, see ``cli_spec.py``), else ``build_parser()``
itself; so an argument the real command rejects fails here too, and every default is the real one.

What it writes (geometry always that of the input unless stated):
  denoise IN OUT            a float32 copy of IN
  anomaly IN OUT            |IN - mean(IN)|; --mask-out M: M = OUT > T (--threshold T, else the tiny model's
                            calibrated 900); --healthy-out H: copy of IN
  synthesize OUT            --like REF or --anatomy LABELS: that grid filled with noise; else a 16x16x8 volume,
                            spacing (1, 1, 2)
  superres IN OUT           z size x factor (--factor-z, default 2), z spacing / factor, same origin/direction
  inpaint IN MASK OUT       IN with the mask set to -1000 (lesion: +100); MASK must be on IN's grid (else exit 2)
  batch TASK --inputs D --out O   a float32 copy of each file of D into O
  info --json / import-weights PATH / init-model --config tiny OUT

Environment:
  FAKE_MEDDIFFFM_RECORD=path       append {"argv": [...]} as a JSON line
  FAKE_MEDDIFFFM_DELAY=seconds     sleep before each progress step (default 0)
  FAKE_MEDDIFFFM_STEPS=n           number of sampling steps reported (default 3)
  FAKE_MEDDIFFFM_FAIL=user|crash   fail with a user error (exit 2) or an unexpected exception (exit 1)
  FAKE_MEDDIFFFM_CHILD_PIDFILE=p   start a long-lived child process and write its pid to p
  FAKE_MEDDIFFFM_ANOMALY=local     anomaly map = |IN - local mean| (small structures light up; for screenshots)
  FAKE_MEDDIFFFM_PARSER=spec.json  the real parser as JSON (default: import MedDiffFMLib and build it)
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import SimpleITK as sitk

PROGRESS = {"mode": "none"}
CALIBRATED_THRESHOLD = 900.0  # the fake tiny model's "anomaly_threshold" in `info --json`


def emit(payload):
    if PROGRESS["mode"] == "json":
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()


def fail(message, code=2):
    emit({"stage": "error", "message": message})
    sys.stderr.write(f"Error: {message}\n")
    sys.exit(code)


def steps():
    delay = float(os.environ.get("FAKE_MEDDIFFFM_DELAY", "0") or 0)
    total = int(os.environ.get("FAKE_MEDDIFFFM_STEPS", "3") or 3)
    emit({"stage": "loading", "step": 1, "total": 1})
    for step in range(1, total + 1):
        if delay:
            time.sleep(delay)
        emit({"stage": "sampling", "step": step, "total": total})


def read(path):
    if not os.path.exists(path):
        fail(f"Input not found: {path}")
    return sitk.ReadImage(path)


def write(image, path):
    sitk.WriteImage(image, path, False)


def like(array, reference, dtype=np.float32):
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.CopyInformation(reference)
    return image


def sameGrid(a, b, tol=1e-4):
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def real_parser():
    spec = os.environ.get("FAKE_MEDDIFFFM_PARSER")
    if spec:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from cli_spec import rebuild

        with open(spec, encoding="utf-8") as f:
            return rebuild(json.load(f))
    from MedDiffFMLib.cli import build_parser

    return build_parser()


def real_tasks():
    """The library's task registry export (as ``info --json`` prints it)."""
    spec = os.environ.get("FAKE_MEDDIFFFM_PARSER")
    if spec:
        with open(spec, encoding="utf-8") as f:
            return json.load(f).get("tasks", {})
    from MedDiffFMLib.tasks.registry import export_tasks

    return export_tasks()


def main(argv):
    record = os.environ.get("FAKE_MEDDIFFFM_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"argv": argv, "server_token": os.environ.get("MEDDIFFFM_SERVER_TOKEN")}) + "\n")

    from MedDiffFMLib.cli import _hoist_global_options  # cheap: the package root imports no torch

    parser = real_parser()
    args = parser.parse_args(_hoist_global_options(list(argv)))
    for key, value in vars(args).items():  # the real parser gives Path objects
        if isinstance(value, os.PathLike):
            setattr(args, key, os.fspath(value))
    PROGRESS["mode"] = args.progress

    # Noise a real library may print: must reach the log, never the progress bar.
    print("fake meddifffm: starting", args.command, flush=True)
    sys.stderr.write("UserWarning: this is a fake warning line\n")
    sys.stderr.flush()

    pidfile = os.environ.get("FAKE_MEDDIFFFM_CHILD_PIDFILE")
    if pidfile:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open(pidfile, "w", encoding="utf-8") as f:
            f.write(str(child.pid))

    failure = os.environ.get("FAKE_MEDDIFFFM_FAIL")
    if failure == "user":
        steps()
        fail("The input is not a CT volume: its values are outside the HU range. Select a CT scan.")
    if failure == "crash":
        raise RuntimeError("fake unexpected crash")

    outputs = []
    if args.command == "info":
        print(json.dumps({
            "version": "0.0-fake", "torch": "fake", "devices": ["cpu"], "tasks": real_tasks(),
            "models": [
                {"name": "meddifffm-tiny", "path": "/models/tiny", "kind": "unet", "sha256_ok": True,
                 "card_summary": "Tiny random model for tests.", "config": {"default_steps": 10},
                 "anomaly_threshold": CALIBRATED_THRESHOLD},
                {"name": "meddifffm-paper", "path": "/models/paper", "kind": "unet", "sha256_ok": False,
                 "card_summary": "Paper model.", "config": {}},
                {"name": "meddifffm-anatomy", "path": "/models/anatomy", "kind": "unet", "sha256_ok": True,
                 "card_summary": "A model trained with anatomy label maps.", "config": {"anatomy_channels": 4}},
                {"name": "meddifffm-controlnet", "path": "/models/cn", "kind": "controlnet", "sha256_ok": True,
                 "card_summary": "", "config": {}},
            ]}), flush=True)
        return 0
    if args.command == "import-weights":
        if not os.path.exists(args.path):
            fail(f"Weights not found: {args.path}")
        print(f"Imported weights from {args.path} (sha256 verified)", flush=True)
        emit({"stage": "done", "step": 1, "total": 1, "outputs": []})
        return 0
    if args.command == "init-model":
        out = args.output
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"config": args.config}, f)
        emit({"stage": "done", "step": 1, "total": 1, "outputs": [out]})
        return 0

    steps()
    emit({"stage": "writing", "step": 0, "total": 1})
    if args.command == "denoise":
        image = read(args.input)
        write(like(sitk.GetArrayFromImage(image), image), args.output)
        outputs = [args.output]
    elif args.command == "anomaly":
        image = read(args.input)
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        if os.environ.get("FAKE_MEDDIFFFM_ANOMALY") == "local":
            from scipy import ndimage

            amap = np.abs(array - ndimage.uniform_filter(array, size=(3, 15, 15)))
        else:
            amap = np.abs(array - array.mean())
        write(like(amap, image), args.output)
        outputs = [args.output]
        if args.mask_out:  # the real command cuts at the model's calibrated threshold without --threshold
            threshold = CALIBRATED_THRESHOLD if args.threshold is None else args.threshold
            write(like(amap > threshold, image, np.uint8), args.mask_out)
            outputs.append(args.mask_out)
        if args.healthy_out:
            write(like(array, image), args.healthy_out)
            outputs.append(args.healthy_out)
    elif args.command == "synthesize":
        if args.like or args.anatomy:
            reference = read(args.anatomy or args.like)
            rng = np.random.default_rng(args.seed)
            write(like(rng.normal(0, 100, sitk.GetArrayFromImage(reference).shape), reference), args.output)
        else:
            image = sitk.GetImageFromArray(np.full((8, 16, 16), -500, np.float32))
            image.SetSpacing((1.0, 1.0, 2.0))
            write(image, args.output)
        outputs = [args.output]
    elif args.command == "superres":
        image = read(args.input)
        factor = args.factor_z or 2
        if factor < 2:
            fail("--factor-z must be at least 2")
        array = np.repeat(sitk.GetArrayFromImage(image).astype(np.float32), factor, axis=0)
        out = sitk.GetImageFromArray(array)
        sx, sy, sz = image.GetSpacing()
        out.SetSpacing((sx, sy, sz / factor))
        out.SetOrigin(image.GetOrigin())
        out.SetDirection(image.GetDirection())
        write(out, args.output)
        outputs = [args.output]
    elif args.command in ("inpaint", "lesion"):
        image = read(args.input)
        mask = read(args.mask)
        if not sameGrid(image, mask):
            fail("The mask is not on the grid of the input volume.")
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        m = sitk.GetArrayFromImage(mask) > 0
        if not m.any():
            fail("The mask is empty.")
        array[m] = -1000.0 if args.command == "inpaint" else 100.0
        write(like(array, image), args.output)
        outputs = [args.output]
    elif args.command == "batch":
        out = args.out
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(args.inputs)):
            image = read(os.path.join(args.inputs, name))
            target = os.path.join(out, name)
            write(like(sitk.GetArrayFromImage(image), image), target)
            outputs.append(target)
    emit({"stage": "done", "step": 1, "total": 1, "outputs": outputs})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
