"""The packaged extension has its models and sample CT where the code looks for them.

The install rules are read from the two CMakeLists files (``ctkMacroCompilePythonScript`` for the
library and the shipped data, ``slicerMacroBuildScriptedModule`` for the module), applied to a
temporary folder laid out like an installed extension's ``qt-scripted-modules``, and then the
library's own model lookup and the module's own sample-data lookup run there, in a fresh Python
that sees only that folder. No Slicer build is needed; what CMake itself does with these rules
(copy each listed file to ``<INSTALL_DIR>/<path relative to the CMakeLists>``) is the part that
only a real extension build confirms.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402

ROOT = Path(paths.REPO_ROOT)
QT_SCRIPTED = Path("lib", "Slicer-5.9", "qt-scripted-modules")  # ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def _call_body(text: str, name: str) -> str:
    match = re.search(re.escape(name) + r"\((.*?)\n\s*\)", text, re.S)
    assert match, f"{name}(...) not found"
    return match.group(1)


def _globs(text: str) -> dict:
    """``file(GLOB_RECURSE VAR RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} CONFIGURE_DEPENDS patterns)``."""
    found = {}
    for match in re.finditer(r"file\(GLOB_RECURSE\s+(\w+)\s+(.*?)\)", text, re.S):
        words = match.group(2).split()
        assert words[:3] == ["RELATIVE", "${CMAKE_CURRENT_SOURCE_DIR}", "CONFIGURE_DEPENDS"], words
        found[match.group(1)] = words[3:]
    return found


def _expand_glob(base: Path, pattern: str) -> list:
    """CMake's GLOB_RECURSE: the last component's wildcard matches files in every subfolder."""
    folder, _, name = pattern.rpartition("/")
    return sorted(p.relative_to(base).as_posix() for p in (base / folder).rglob(name)
                  if p.is_file() and "__pycache__" not in p.parts)


def _expand_list(value: str, variables: dict) -> list:
    items = []
    for part in value.strip('"').split(";"):
        part = part.strip()
        ref = re.fullmatch(r"\$\{(\w+)\}", part)
        if ref:
            items += variables[ref.group(1)]
        elif part:
            items.append(part)
    return items


def installedFiles() -> dict:
    """``{source path: path inside qt-scripted-modules}`` for every file the two CMakeLists install."""
    installed = {}
    top = _strip_comments((ROOT / "CMakeLists.txt").read_text())
    variables = {name: sorted({f for p in patterns for f in _expand_glob(ROOT, p)})
                 for name, patterns in _globs(top).items()}
    body = _call_body(top, "ctkMacroCompilePythonScript")
    args = dict(re.findall(r"^\s*(SCRIPTS|RESOURCES|INSTALL_DIR)\s+(.+?)\s*$", body, re.M))
    assert args["INSTALL_DIR"] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}"
    assert re.search(r"^\s*NO_INSTALL_SUBDIR\s*$", body, re.M), "files must keep their paths, without a target subfolder"
    for key in ("SCRIPTS", "RESOURCES"):
        for rel in _expand_list(args[key], variables):
            installed[ROOT / rel] = Path(rel)

    module = _strip_comments((ROOT / "MedDiffFM" / "CMakeLists.txt").read_text())
    for name in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        listed = re.search(r"set\(\s*" + name + r"\s+(.*?)\)", module, re.S).group(1).split()
        for rel in listed:
            rel = rel.replace("${MODULE_NAME}", "MedDiffFM")
            installed[ROOT / "MedDiffFM" / rel] = Path(rel)
    assert "slicerMacroBuildScriptedModule(" in module
    return installed


def shippedFiles() -> list:
    """Every file a user needs from ``Resources/``: each model's manifest and the files it lists
    (config, safetensors shards, model card), the role index, and the sample CT."""
    models = ROOT / "Resources" / "Models"
    files = [models / "models.json", ROOT / "Resources" / "SampleData" / "chest_ct_sample.nii.gz"]
    manifests = sorted(models.glob("*/manifest.json"))
    assert len(manifests) >= 3, "the base, super-resolution and lesion models ship with the extension"
    for manifest in manifests:
        listed = json.loads(manifest.read_text())["files"]
        assert "config.json" in listed and "MODEL_CARD.md" in listed, manifest
        assert any(name.endswith(".safetensors") for name in listed), manifest
        files.append(manifest)
        files += [manifest.parent / name for name in listed]
    return files


def test_every_shipped_model_file_and_the_sample_ct_are_installed():
    installed = installedFiles()
    for source in shippedFiles():
        assert source.is_file(), source
        assert source in installed, f"{source.relative_to(ROOT)} is not installed by the CMakeLists"
        assert installed[source] == source.relative_to(ROOT), "Resources/ keeps its layout beside the module"
    # the module and the library land side by side, as Process.libraryRoot expects
    targets = set(installed.values())
    assert Path("MedDiffFM.py") in targets and Path("MedDiffFMLib/__init__.py") in targets
    assert Path("MedDiffFMModuleLib/BundledData.py") in targets


LOOKUP = r"""
import json, sys
from MedDiffFMLib.models import registry
import MedDiffFMModuleLib.BundledData as bundled
import MedDiffFMModuleLib.Process as process
print(json.dumps({
    "library": registry.__file__,
    "shipped": str(registry.shipped_models_dir()),
    "roles": {role: str(registry.resolve_model(None, role).path) for role in registry.ROLES},
    "sample": bundled.sampleDataPath(),
    "source": bundled.sampleDataSourceArguments(),
    "libraryRoot": process.libraryRoot(bundled.MODULE_DIR),
}))
"""


@pytest.fixture(scope="module")
def installTree(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("MedDiffFM-install")
    for source, target in installedFiles().items():
        destination = prefix / QT_SCRIPTED / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    return prefix


def test_the_library_and_the_module_find_them_in_the_installed_layout(installTree, tmp_path):
    pytest.importorskip("torch", reason="the model lookup imports the library's model code (torch)")
    qtScripted = installTree / QT_SCRIPTED
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDDIFFFM_MODELS_DIR")}
    env.update(PYTHONPATH=str(qtScripted), XDG_DATA_HOME=str(tmp_path / "no-user-models"), HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", LOOKUP], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["library"]).is_relative_to(qtScripted), "the installed library was imported"
    assert Path(found["shipped"]) == qtScripted / "Resources" / "Models"
    for role, path in found["roles"].items():
        assert Path(path).parent == qtScripted / "Resources" / "Models", role  # verified by sha256 there
    assert Path(found["sample"]) == qtScripted / "Resources" / "SampleData" / "chest_ct_sample.nii.gz"
    assert found["source"]["uris"] == [Path(found["sample"]).as_uri()]
    assert Path(found["libraryRoot"]) == qtScripted


def test_sample_ct_is_registered_with_sample_data_offline(tmp_path):
    """What the module hands to Slicer's Sample Data: a file:// address of the bundled CT, its
    sha256 (checked by Sample Data after copying it into its cache) and a thumbnail."""
    import hashlib
    import types
    import urllib.request

    sys.path.insert(0, paths.MODULE_DIR)
    from MedDiffFMModuleLib import BundledData

    sample = ROOT / "Resources" / "SampleData" / BundledData.SAMPLE_FILE
    assert hashlib.sha256(sample.read_bytes()).hexdigest() == BundledData.SAMPLE_SHA256
    calls = []
    sampleData = types.SimpleNamespace(SampleDataLogic=types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kwargs: calls.append(kwargs)))
    assert BundledData.registerSampleData(sampleData)
    (source,) = calls
    assert source["category"] == "MedDiffFM" and source["fileNames"] == [BundledData.SAMPLE_FILE]
    assert source["checksums"] == [f"SHA256:{BundledData.SAMPLE_SHA256}"]
    assert Path(source["thumbnailFileName"]).is_file()
    # Sample Data fetches it with urlretrieve: a file:// address needs no network
    (uri,) = source["uris"]
    assert uri.startswith("file://")
    copy = tmp_path / "copy.nii.gz"
    urllib.request.urlretrieve(uri, copy)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == BundledData.SAMPLE_SHA256
    # without the file (e.g. a stripped install) nothing is registered
    assert not BundledData.registerSampleData(sampleData, moduleDir=str(tmp_path))
    assert len(calls) == 1
