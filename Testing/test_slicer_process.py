"""The background process runner of the Slicer module, against the fake ``meddifffm``."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402

from MedDiffFMModuleLib.Process import ProcessRunner, libraryRoot, processEnvironment  # noqa: E402
from MedDiffFMModuleLib.Progress import ProgressParser  # noqa: E402


def run(args, env=None, timeout=60):
    parser = ProgressParser()
    updates = []
    runner = ProcessRunner(paths.FAKE_COMMAND + args, env=processEnvironment(extra=env)).start()

    def handle(lines):
        for stream, line in lines:
            update = parser.feed(line, stream)
            if update:
                updates.append(update)

    code = runner.wait(timeout=timeout, onLines=handle)
    return code, parser, updates


def test_progress_lines_arrive_in_order_and_noise_goes_to_the_log(tmp_path):
    code, parser, updates = run(["init-model", "--config", "tiny", str(tmp_path / "m"), "--progress", "json"])
    assert code == 0 and parser.done and parser.outputs == [str(tmp_path / "m")]
    assert any("fake meddifffm: starting" in line for line in parser.logLines)
    assert any("[stderr] UserWarning" in line for line in parser.logLines)


def test_sampling_steps_are_reported(tmp_path):
    code, parser, updates = run(["info", "--json"], env={"FAKE_MEDDIFFFM_STEPS": "4"})
    assert code == 0
    code, parser, updates = run(["import-weights", str(tmp_path), "--progress", "json"])
    assert code == 0 and updates[-1].stage == "done"


def test_user_error_gives_the_librarys_message_and_exit_code_2(tmp_path):
    code, parser, updates = run(["init-model", str(tmp_path / "m"), "--progress", "json"],
                                env={"FAKE_MEDDIFFFM_FAIL": "user"})
    assert code == 2
    assert [u.stage for u in updates if u.stage == "sampling"]  # progress came before the error
    assert parser.failureMessage(code).startswith("The input is not a CT volume")


def test_crash_gives_the_exception_line_and_exit_code_1(tmp_path):
    code, parser, _updates = run(["init-model", str(tmp_path / "m"), "--progress", "json"],
                                 env={"FAKE_MEDDIFFFM_FAIL": "crash"})
    assert code == 1
    assert parser.failureMessage(code) == "RuntimeError: fake unexpected crash"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is dead too
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(os.name == "nt", reason="process-group check written for POSIX")
def test_cancel_ends_the_whole_process_tree_and_does_not_block(tmp_path):
    pidfile = tmp_path / "child.pid"
    env = processEnvironment(extra={"FAKE_MEDDIFFFM_DELAY": "5", "FAKE_MEDDIFFFM_STEPS": "20",
                                    "FAKE_MEDDIFFFM_CHILD_PIDFILE": str(pidfile)})
    out = tmp_path / "out.nrrd"
    runner = ProcessRunner(paths.FAKE_COMMAND + ["synthesize", str(out), "--region", "chest", "--progress", "json"],
                           env=env)
    start = time.monotonic()
    runner.start()
    assert time.monotonic() - start < 2.0  # start() does not wait for the run
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the fake CLI did not start its child"
        time.sleep(0.05)
    childPid = int(pidfile.read_text())
    assert runner.isRunning() and _alive(childPid)
    runner.cancel()
    assert runner.cancelled and not runner.isRunning()
    deadline = time.monotonic() + 5
    while _alive(childPid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(childPid), "the grandchild process survived Cancel"
    assert not out.exists()


def test_environment_puts_the_library_on_pythonpath():
    root = libraryRoot(paths.MODULE_DIR)
    assert root == paths.REPO_ROOT  # source checkout: MedDiffFMLib is one level up
    env = processEnvironment(root)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root
    assert env["PYTHONUNBUFFERED"] == "1"
