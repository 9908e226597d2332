"""Clear words: the mask is "mask", a list file "list", an empty SeriesInstanceUID shows as "",
`info` keeps "checksum failed" apart from "config unreadable", and every --help lists the exit
codes the README's table gives."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from helpers.models import tiny_models  # noqa: F401  (fixture)
from helpers.safety import assert_refused
from MedDiffFMLib.cli import EXIT_CODES, build_parser, main
from MedDiffFMLib.errors import InputError
from MedDiffFMLib.io.dicom_read import DicomSeries, _choose
from MedDiffFMLib.tasks.batch import find_cases

README = Path(__file__).resolve().parents[1] / "README.md"


def test_a_missing_list_file_is_called_a_list(tmp_path, capsys):
    with pytest.raises(InputError, match=r"The list file '.*cases.txt' does not exist"):
        find_cases(str(tmp_path / "cases.txt"))
    message = assert_refused(["batch", "denoise", "--inputs", tmp_path / "cases.txt", "--out", tmp_path / "o",
                              "--progress", "none"], capsys, tmp_path, [])
    assert "list file" in message and "the pattern" not in message


def test_an_empty_series_uid_shows_as_quotes(tmp_path):
    series = [DicomSeries("", ("a.dcm",), "x"), DicomSeries("1.2.3", ("b.dcm",))]
    assert series[0].summary().startswith('""')
    with pytest.raises(InputError) as error:
        _choose(tmp_path, series, None)
    assert '"" (1 slices' in str(error.value) and "1.2.3" in str(error.value)
    with pytest.raises(InputError, match='no series with UID "".'):
        _choose(tmp_path, series[1:], "")


def test_info_keeps_checksum_failed_apart_from_config_unreadable(tmp_path, tiny_models, capsys, monkeypatch):  # noqa: F811
    library = tmp_path / "models"
    library.mkdir()
    for name in ("good", "damaged", "badconfig"):
        shutil.copytree(tiny_models.base, library / name)
    weights = next((library / "damaged").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    manifest = json.loads((library / "badconfig" / "manifest.json").read_text())
    config = library / "badconfig" / "config.json"
    doc = json.loads(config.read_text())
    doc["format"] = "something-else"
    config.write_text(json.dumps(doc))
    manifest["files"]["config.json"] = hashlib.sha256(config.read_bytes()).hexdigest()
    (library / "badconfig" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("MEDDIFFFM_MODELS_DIR", str(library))
    assert main(["info", "--json"]) == 0
    models = {m["path"].split("/")[-1]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert models["good"]["status"] == "ok" and models["good"]["sha256_ok"] is True
    assert models["damaged"]["status"] == "checksum failed" and "checksum" in models["damaged"]["error"]
    assert models["badconfig"]["status"] == "config unreadable" and "format" in models["badconfig"]["error"]
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "CHECKSUM FAILED" in text and "CONFIG UNREADABLE" in text
    line = next(row for row in text.splitlines() if "badconfig" in row)
    assert "CHECKSUM" not in line


def test_every_help_lists_the_exit_codes_of_the_readme(capsys):
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README.read_text(), flags=re.M))
    assert sorted(int(c) for c in table) == sorted(code for code, _ in EXIT_CODES)
    parser = build_parser()
    helps = [parser.format_help()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    helps += [p.format_help() for p in sub.choices.values()]
    batch = sub.choices["batch"]
    nested = next(a for a in batch._actions if a.__class__.__name__ == "_SubParsersAction")
    helps += [p.format_help() for p in nested.choices.values()]
    for text in helps:
        assert "exit codes:" in text
        for code, meaning in EXIT_CODES:
            assert re.search(rf"^\s+{code}\s+", text, flags=re.M), (code, text[-600:])
            assert " ".join(meaning.split()[:3]) in " ".join(text.split())
    for code, meaning in EXIT_CODES:
        assert meaning.split()[0].rstrip(",").lower() in table[str(code)].lower()
