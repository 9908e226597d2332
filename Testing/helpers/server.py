"""A ``meddifffm serve`` process on loopback for the server tests: started on a free port, waited
for (bounded), stopped and reaped by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    token: str
    work_dir: Path
    process: subprocess.Popen
    log: Path

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def jobs_on_disk(self) -> list:
        return sorted(p.name for p in self.work_dir.iterdir()) if self.work_dir.is_dir() else []


def server_env(models_dir: Path) -> dict:
    """The server's environment: the tiny models by name, one torch thread (as the tests' own)."""
    return dict(os.environ, MEDDIFFFM_MODELS_DIR=str(models_dir), OMP_NUM_THREADS="1",
                PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def start_server(root: Path, models_dir: Path, *extra: str, timeout_s: float = 120.0) -> RunningServer:
    """Start ``meddifffm serve`` on 127.0.0.1 and wait (at most ``timeout_s``) until it answers."""
    import httpx

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token_file, work_dir, log = root / "token", root / "work", root / "serve.log"
    cmd = [sys.executable, "-m", "MedDiffFMLib.cli", "serve", "--port", str(port), "--devices", "cpu",
           "--token-file", str(token_file), "--work-dir", str(work_dir), *extra]
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, env=server_env(models_dir), stdout=out, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    token: Optional[str] = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {log.read_text()[-2000:]}")
        if token is None and token_file.is_file():
            token = token_file.read_text().strip() or None
        if token is not None:
            try:
                if httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 200:
                    return RunningServer(url, token, work_dir, process, log)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    raise RuntimeError(f"the server did not answer within {timeout_s} s: {log.read_text()[-2000:]}")
