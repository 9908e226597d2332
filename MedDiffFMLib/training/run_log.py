"""A training run's log: ``log.csv`` in the run folder (one row per logged step) and, when TensorBoard
is installed and wanted, its event files beside it. A resumed run keeps the rows up to its step."""

from __future__ import annotations

import csv
from pathlib import Path

LOG_FIELDS = ["step", "samples", "loss", "lr", "samples_per_s", "elapsed_s", "train_hours", "val_loss"]
SCALARS = ("loss", "lr", "samples_per_s", "val_loss")  # the fields TensorBoard plots


class RunLog:
    """Opens ``run_dir/log.csv`` keeping only rows up to ``step`` (those a resume repeats go), then
    appends one row per :meth:`write`."""

    def __init__(self, run_dir: Path, step: int, tensorboard: bool) -> None:
        self.path = Path(run_dir) / "log.csv"
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("step") and int(r["step"]) <= step]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        self._board = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._board = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except Exception:  # tensorboard not installed
                self._board = None

    def write(self, row: dict) -> None:
        """Append ``row`` (fields of :data:`LOG_FIELDS`; missing ones stay empty)."""
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
        if self._board is not None:
            for key in SCALARS:
                if row.get(key) not in (None, ""):
                    self._board.add_scalar(key, float(row[key]), int(row["step"]))

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
