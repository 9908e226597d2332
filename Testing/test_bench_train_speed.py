"""tools/gpu_chunk/train_speed.py (the GPU chunk's throughput probe): every variant trains on the same
batches from the same weights, a layout leaves the loss unchanged, the batch variant doubles the batch,
and the table is written."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("monai")

from test_training_data import make_cache  # noqa: E402

from tools.gpu_chunk import train_speed  # noqa: E402


def test_train_speed_measures_every_variant_on_a_tiny_config(tmp_path, capsys):
    cache = make_cache(tmp_path / "data", n_train=2, n_val=1)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model": "tiny", "cache": "unused", "run_dir": "unused", "batch_size": 2,
                                  "num_workers": 0, "device": "cpu", "tensorboard": False}))
    out = tmp_path / "speed.md"
    assert train_speed.main(["--config", str(config), "--cache", str(cache), "--seconds", "0.2", "--warmup", "1",
                             "--batches", "2", "--loader-seconds", "0.2", "--out", str(out)]) == 0
    lines = [line for line in out.read_text().splitlines() if line.startswith("| ") and "variant" not in line]
    assert [line.split(" | ")[0].lstrip("| ") for line in lines] == list(train_speed.VARIANTS)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0][2] == "1.00" and all(float(row[1]) > 0 for row in cells)
    assert [int(row[4]) for row in cells] == [2, 2, 2, 2, 4]
    # the same initial weights and validation batches: layouts differ only by rounding
    losses = [float(row[6]) for row in cells[:4]]
    assert max(losses) - min(losses) < 1e-4, losses
    assert "Data loader (0 workers" in out.read_text()
    assert not any(tmp_path.glob("unused*"))  # nothing written beside the temporary runs


def test_train_speed_names_an_unknown_variant(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_speed.main(["--config", str(tmp_path / "c.json"), "--cache", str(tmp_path), "--variants", "fastest"])
    assert "unknown variant(s) ['fastest']" in capsys.readouterr().err


def test_a_variant_out_of_memory_gets_a_row_of_its_own(tmp_path, monkeypatch):
    import torch

    cache = make_cache(tmp_path / "data", n_train=2, n_val=1)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model": "tiny", "cache": "unused", "run_dir": "unused", "batch_size": 2,
                                  "device": "cpu", "tensorboard": False}))
    real = train_speed.measure_variant

    def measure(trainer, batches, warmup, seconds):
        if trainer.config.batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(trainer, batches, warmup, seconds)

    monkeypatch.setattr(train_speed, "measure_variant", measure)
    out = tmp_path / "speed.md"
    assert train_speed.main(["--config", str(config), "--cache", str(cache), "--seconds", "0.1", "--warmup", "1",
                             "--loader-seconds", "0", "--variants", "as configured,batch x2 + cudnn_benchmark",
                             "--out", str(out)]) == 0
    text = out.read_text()
    assert "| batch x2 + cudnn_benchmark | out of memory | – | – | 4 |" in text
    assert "| as configured |" in text and "Data loader" not in text
