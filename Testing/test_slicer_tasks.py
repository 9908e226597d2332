"""Slicer module pieces that need neither Slicer nor Qt: the task table (which options each task
shows), command-line arguments, progress parsing, model info, time estimate, dependency check."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402,F401  (sys.path for MedDiffFMModuleLib)

from MedDiffFMModuleLib import Tasks  # noqa: E402
from MedDiffFMModuleLib.Dependencies import DependencyChecker, DependencyError  # noqa: E402
from MedDiffFMModuleLib.Models import ModelInfo, estimateSeconds, formatDuration, parseInfoOutput  # noqa: E402
from MedDiffFMModuleLib.Progress import ProgressParser, parseProgressLine  # noqa: E402
from MedDiffFMModuleLib.Tasks import Device, Region, Task, TaskOptions, TaskPaths  # noqa: E402

EXPECTED_VISIBLE = {
    Task.DENOISE: {"strength", "steps", "seed"},
    Task.ANOMALY: {"steps", "seed", "threshold"},
    Task.SYNTHESIZE: {"region", "steps", "seed"},
    Task.SUPERRES: {"factorZ", "steps", "seed"},
    Task.INPAINT: {"mask", "steps", "seed"},
    Task.LESION: {"mask", "steps", "seed"},
}


@pytest.mark.parametrize("task", list(Task))
def test_only_the_tasks_options_are_visible(task):
    visible = {option for option, shown in Tasks.visibleOptions(task).items() if shown}
    assert visible == EXPECTED_VISIBLE[task]
    assert set(Tasks.visibleOptions(task)) == set(Tasks.ALL_OPTIONS)


def test_task_labels_and_cli_names():
    assert [t.label() for t in Task] == [
        "Denoise", "Anomaly map", "Synthesize", "Super-resolve", "Inpaint", "Generate lesion"]
    assert [t.value for t in Task] == ["denoise", "anomaly", "synthesize", "superres", "inpaint", "lesion"]
    assert [r.value for r in Region] == ["chest", "abdomen", "head_neck"]


@pytest.mark.parametrize("task, name", [
    (Task.DENOISE, "CT denoised"), (Task.ANOMALY, "CT anomaly map"), (Task.SYNTHESIZE, "CT synthesized"),
    (Task.SUPERRES, "CT super-resolved"), (Task.INPAINT, "CT with generated tissue"), (Task.LESION, "CT with generated lesion")])
def test_output_names(task, name):
    assert Tasks.outputName(task, "CT") == name


def test_synthesis_without_reference_is_synthetic_ct():
    assert Tasks.outputName(Task.SYNTHESIZE, None) == "synthetic CT"


def test_device_values():
    assert Device.AUTO.cliValue("linux") == "auto"
    assert Device.CPU.cliValue("linux") == "cpu"
    assert Device.GPU.cliValue("linux") == "cuda"
    assert Device.GPU.cliValue("darwin") == "mps"


def test_denoise_arguments():
    args = Tasks.buildTaskArguments(
        Task.DENOISE, TaskPaths(input="/t/in.nrrd", output="/t/out.nrrd"),
        TaskOptions(strength=0.3, steps=20, seed=7, model="tiny", device=Device.CPU), platform="linux")
    assert args == ["denoise", "/t/in.nrrd", "/t/out.nrrd", "--strength", "0.3",
                    "--model", "tiny", "--device", "cpu", "--steps", "20", "--seed", "7", "--progress", "json"]


def test_panel_special_values_leave_the_choice_to_the_library():
    # steps 0 = model default, seed -1 = random, factorZ 0 = automatic, empty model = default
    args = Tasks.buildTaskArguments(
        Task.SUPERRES, TaskPaths(input="i", output="o"),
        TaskOptions(steps=0, seed=-1, factorZ=0.0, model=""), platform="linux")
    assert args == ["superres", "i", "o", "--device", "auto", "--progress", "json"]
    args = Tasks.buildTaskArguments(Task.SUPERRES, TaskPaths(input="i", output="o"),
                                    TaskOptions(factorZ=3, seed=0), platform="linux")
    assert args[3:5] == ["--factor-z", "3"] and "--seed" in args and args[args.index("--seed") + 1] == "0"


def test_anomaly_arguments_with_threshold_and_healthy():
    args = Tasks.buildTaskArguments(
        Task.ANOMALY, TaskPaths(input="i", output="o", anomalyMask="m", healthy="h"),
        TaskOptions(threshold=150.0), platform="linux")
    assert args[:3] == ["anomaly", "i", "o"]
    assert args[args.index("--threshold") + 1] == "150"
    assert args[args.index("--mask-out") + 1] == "m"
    assert args[args.index("--healthy-out") + 1] == "h"
    assert "--strength" not in args
    plain = Tasks.buildTaskArguments(Task.ANOMALY, TaskPaths(input="i", output="o"), TaskOptions(), platform="linux")
    assert "--threshold" not in plain and "--mask-out" not in plain


def test_synthesize_mask_and_batch_arguments():
    args = Tasks.buildTaskArguments(Task.SYNTHESIZE, TaskPaths(output="o", reference="r"),
                                    TaskOptions(region=Region.HEAD_NECK), platform="linux")
    assert args[:4] == ["synthesize", "o", "--region", "head_neck"] and args[args.index("--like") + 1] == "r"
    assert Tasks.buildTaskArguments(Task.INPAINT, TaskPaths(input="i", mask="m", output="o"),
                                    TaskOptions(), platform="linux")[:4] == ["inpaint", "i", "m", "o"]
    assert Tasks.buildTaskArguments(Task.LESION, TaskPaths(input="i", mask="m", output="o"),
                                    TaskOptions(), platform="linux")[:4] == ["lesion", "i", "m", "o"]
    with pytest.raises(ValueError):
        Tasks.buildTaskArguments(Task.INPAINT, TaskPaths(input="i", output="o"), TaskOptions())
    batch = Tasks.buildBatchArguments(Task.DENOISE, "in", "out", TaskOptions(strength=0.2), platform="linux")
    assert batch[:6] == ["batch", "denoise", "--inputs", "in", "--out", "out"] and "--strength" in batch
    with pytest.raises(ValueError, match="masks"):
        Tasks.buildBatchArguments(Task.INPAINT, "in", "out", TaskOptions())
    withMasks = Tasks.buildBatchArguments(Task.LESION, "in", "out", TaskOptions(), platform="linux", masksDir="m")
    assert withMasks[:8] == ["batch", "lesion", "--inputs", "in", "--out", "out", "--masks", "m"]


def test_option_validation_messages():
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        TaskOptions(strength=1.5).validate(Task.DENOISE)
    with pytest.raises(ValueError, match="z factor must be a whole number of at least 2"):
        TaskOptions(factorZ=1).validate(Task.SUPERRES)
    with pytest.raises(ValueError, match="z factor must be a whole number"):
        TaskOptions(factorZ=2.5).validate(Task.SUPERRES)
    TaskOptions(factorZ=0).validate(Task.SUPERRES)  # automatic
    TaskOptions(factorZ=4.0).validate(Task.SUPERRES)
    TaskOptions(strength=1.5).validate(Task.INPAINT)  # strength is not an option of inpainting


def test_progress_lines():
    assert parseProgressLine('{"stage": "sampling", "step": 3, "total": 20}').percent == 15
    assert parseProgressLine("Loading weights...") is None
    assert parseProgressLine('{"not": "progress"}') is None
    assert parseProgressLine("{broken json") is None
    update = parseProgressLine('{"stage": "sampling", "step": 3, "total": 20}')
    assert update.text() == "Sampling: step 3 of 20"


def test_progress_parser_keeps_noise_for_the_log_and_reads_outputs():
    parser = ProgressParser()
    assert parser.feed("some library print") is None
    assert parser.feed('{"stage": "sampling", "step": 1, "total": 2}', "stderr") is None  # only stdout is protocol
    assert parser.feed('{"stage": "sampling", "step": 2, "total": 2}').step == 2
    done = parser.feed('{"stage": "done", "step": 1, "total": 1, "outputs": ["/o/a.nrrd", "/o/b.nrrd"]}')
    assert done.percent == 100 and parser.done and parser.outputs == ["/o/a.nrrd", "/o/b.nrrd"]
    assert "some library print" in parser.logLines
    assert any("[stderr]" in line for line in parser.logLines)


def test_failure_message_prefers_the_librarys_message():
    parser = ProgressParser()
    parser.feed("Traceback (most recent call last):", "stderr")
    parser.feed('{"stage": "error", "message": "The input is not a CT volume."}')
    assert parser.failureMessage(2) == "The input is not a CT volume."
    crash = ProgressParser()
    for line in ["Traceback (most recent call last):", '  File "x.py", line 1', "    boom()", "RuntimeError: boom"]:
        crash.feed(line, "stderr")
    assert crash.failureMessage(1) == "RuntimeError: boom"
    assert "exit code 9" in ProgressParser().failureMessage(9)


def test_info_parsing_and_model_card():
    stdout = "loading...\n" + json.dumps({
        "version": "0.1.0", "torch": "2.13.0", "devices": ["cpu", "cuda:0"],
        "models": [{"name": "paper", "path": "/m/paper", "kind": "unet", "sha256_ok": True,
                    "card_summary": "Trained on 3D CT.", "config": {"default_steps": 100}},
                   {"name": "broken", "path": "/m/broken", "kind": "unet", "sha256_ok": False}]})
    info = parseInfoOutput(stdout)
    assert info.hasGpu and [m.name for m in info.models] == ["paper", "broken"]
    assert "checksum verified" in info.model("paper").summaryText()
    assert "Trained on 3D CT." in info.model("paper").summaryText()
    assert "MISMATCH" in info.model("/m/broken").summaryText()
    assert info.model(None).name == "paper" and info.model("nope") is None
    with pytest.raises(ValueError):
        parseInfoOutput("no json here")
    pretty = "warning: something\n" + json.dumps({"version": "1", "devices": ["cpu"], "models": []}, indent=2) + "\n"
    assert parseInfoOutput(pretty).models == [] and not parseInfoOutput(pretty).hasGpu


def test_time_estimate_counts_the_network_evaluations_of_the_model():
    starter = ModelInfo(name="starter", config={"channels": [16, 32, 64], "patch_size": [32, 32, 32],
                                               "spacing_mm": [3.0, 3.0, 3.0]})
    default = ModelInfo(name="default", config={"channels": [32, 64, 128], "patch_size": [64, 64, 64],
                                               "spacing_mm": [2.0, 2.0, 2.0]})
    dims, spacing = (256, 256, 128), (1.0, 1.0, 1.0)
    small = estimateSeconds(dims, spacing, 5, "cpu", starter)
    # The benchmark measured 2.8 s per step for this case with this model on the 2-core CPU.
    assert 5 * 1.5 < small < 5 * 6
    assert estimateSeconds((512, 512, 256), spacing, 5, "cpu", starter) > 4 * (small - 2)
    assert estimateSeconds(dims, spacing, 10, "cpu", starter) > small
    assert estimateSeconds(dims, spacing, 5, "cuda", starter) < small
    assert estimateSeconds(dims, spacing, 5, "cpu", default) > 5 * small
    # No steps given: the task's default.
    assert estimateSeconds(dims, spacing, None, "cpu", starter, task="denoise") == small
    assert estimateSeconds(dims, spacing, None, "cpu", starter, task="synthesize") > 9 * (small - 2)
    # Synthesis without a reference volume samples one patch.
    assert estimateSeconds(None, None, 50, "cpu", starter) < estimateSeconds(dims, spacing, 50, "cpu", starter)
    assert formatDuration(30) == "about 30 s" and formatDuration(600) == "about 10 min"


def test_dependencies_present_means_no_question():
    asked = []
    checker = DependencyChecker(hasModule=lambda name: True, installTorch=lambda: asked.append("torch"),
                                pipInstall=lambda reqs: asked.append(reqs))
    assert checker.ensure(confirm=lambda text: asked.append(text) or True)
    assert asked == []


def test_dependencies_are_installed_only_after_consent_torch_first():
    installed = set()
    calls = []
    checker = DependencyChecker(
        packages={"torch": "torch", "monai": "monai>=1.5"},
        hasModule=lambda name: name in installed,
        installTorch=lambda: (calls.append("torch"), installed.add("torch")),
        pipInstall=lambda reqs: (calls.append(tuple(reqs)), installed.update({"monai"})))
    questions = []
    assert checker.ensure(confirm=lambda text: questions.append(text) or True)
    assert len(questions) == 1 and "torch, monai" in questions[0]
    assert calls == ["torch", ("monai>=1.5",)]


def test_declined_installation_raises_a_clear_error_and_installs_nothing():
    calls = []
    checker = DependencyChecker(packages={"torch": "torch", "monai": "monai"}, hasModule=lambda name: False,
                                installTorch=lambda: calls.append("torch"), pipInstall=calls.append)
    with pytest.raises(DependencyError, match="cannot run without torch, monai"):
        checker.ensure(confirm=lambda text: False)
    assert calls == []


def test_failed_installation_is_reported():
    def broken():
        raise RuntimeError("no network")

    checker = DependencyChecker(packages={"torch": "torch"}, hasModule=lambda name: False,
                                installTorch=broken, pipInstall=lambda reqs: None)
    with pytest.raises(DependencyError, match="no network"):
        checker.ensure(confirm=lambda text: True)


def test_time_estimate_uses_the_library_default_steps():
    from MedDiffFMModuleLib.Models import DEFAULT_TASK_STEPS
    from MedDiffFMLib.tasks.anomaly import AnomalyOptions
    from MedDiffFMLib.tasks.denoise import DenoiseOptions
    from MedDiffFMLib.tasks.inpaint import InpaintOptions
    from MedDiffFMLib.tasks.lesion import LesionOptions
    from MedDiffFMLib.tasks.superres import SuperResOptions
    from MedDiffFMLib.tasks.synthesize import SynthesisOptions

    library = {"denoise": DenoiseOptions, "anomaly": AnomalyOptions, "synthesize": SynthesisOptions,
               "superres": SuperResOptions, "inpaint": InpaintOptions, "lesion": LesionOptions}
    assert DEFAULT_TASK_STEPS == {task: options().steps for task, options in library.items()}
