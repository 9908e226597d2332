"""The Slicer extension's build and description files agree with each other and with the files
on disk (no Slicer build needed)."""

import ast
import glob
import json
import os
import re
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slicer_helpers import paths  # noqa: E402

ROOT = paths.REPO_ROOT
MODULE = paths.MODULE_DIR
HOMEPAGE = "https://github.com/meddifffm/SlicerMedDiffFM"


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def cmakeSet(text, name):
    match = re.search(r"set\(\s*" + re.escape(name) + r"\s+(.*?)\)\s*(#.*)?$", text, re.S | re.M)
    assert match, f"set({name} ...) not found"
    return match.group(1).strip()


def cmakeValue(text, name):
    """The value of ``set(NAME "...")`` with ``${VAR}`` references and the one
    ``string(REPLACE ...)`` of the top-level CMakeLists expanded."""
    variables = {}
    for statement in re.finditer(r'^(set|string)\((.*?)\)\s*(#.*)?$', text, re.M):
        words = re.findall(r'"[^"]*"|\S+', statement.group(2))
        expand = lambda value: re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value.strip('"'))
        if statement.group(1) == "set" and len(words) == 2:
            variables[words[0]] = expand(words[1])
        elif statement.group(1) == "string" and words[0] == "REPLACE":
            _, old, new, out, value = words
            variables[out] = expand(value).replace(old.strip('"'), new.strip('"'))
    return variables[name]


def cmakeList(text, name):
    body = re.sub(r"#.*", "", cmakeSet(text, name))
    return [item.replace("${MODULE_NAME}", "MedDiffFM") for item in body.split()]


def pngSize(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_top_level_cmake_has_the_extension_metadata():
    text = read("CMakeLists.txt")
    assert re.search(r"project\(MedDiffFM\)", text)
    assert cmakeSet(text, "EXTENSION_HOMEPAGE") == f'"{HOMEPAGE}"'
    assert cmakeSet(text, "EXTENSION_CATEGORY") == '"Filtering"'
    assert cmakeSet(text, "EXTENSION_DEPENDS").startswith('"PyTorch"')
    description = cmakeSet(text, "EXTENSION_DESCRIPTION")
    assert "arXiv:2410.15432" in description and "research use only" in description.lower()
    assert cmakeSet(text, "EXTENSION_CONTRIBUTORS")
    raw = HOMEPAGE.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmakeValue(text, variable).split():
            assert url.startswith(raw), url
            local = url.split("/main/", 1)[1]
            assert os.path.isfile(os.path.join(ROOT, local)), f"{variable}: {local} missing in the repository"
    assert "add_subdirectory(MedDiffFM)" in text
    assert "find_package(Slicer REQUIRED)" in text
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in text and "Slicer_EXTENSION_CPACK" in text


def test_repository_address_is_set_once_and_the_copies_agree():
    """CMakeLists.txt sets it; the index entry and the module's help repeat it (they cannot read CMake)."""
    homepage = cmakeValue(read("CMakeLists.txt"), "EXTENSION_HOMEPAGE")
    entry = json.loads(read("MedDiffFM.json"))
    assert entry["scm_url"] == homepage + ".git"
    sys.path.insert(0, MODULE)
    import MedDiffFMModuleLib

    assert MedDiffFMModuleLib.HOMEPAGE == homepage


def test_s4ext_description_is_generated_from_cmake():
    """MedDiffFM.s4ext (the layout's description file) is written from CMakeLists.txt by
    scripts/write_s4ext.py; it is stale when it differs from what the script writes now."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("write_s4ext", os.path.join(ROOT, "scripts", "write_s4ext.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    expected = script.s4ext_text(read("CMakeLists.txt"))
    assert read("MedDiffFM.s4ext") == expected, "run: python scripts/write_s4ext.py"
    fields = dict(line.split(" ", 1) for line in expected.splitlines() if line and not line.startswith("#"))
    assert fields["homepage"] == cmakeValue(read("CMakeLists.txt"), "EXTENSION_HOMEPAGE")
    assert fields["category"] == "Filtering" and fields["depends"] == "PyTorch"
    assert fields["iconurl"].endswith("/main/Resources/Icons/MedDiffFM.png")
    assert "research use only" in fields["description"].lower()


def test_readme_shows_a_real_picture_and_names_the_licence():
    readme = read("README.md")
    top = readme[: readme.index("## Quick start")]
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", top)
    assert pictures, "a before/after picture near the top of the README"
    for picture in pictures:
        assert os.path.isfile(os.path.join(ROOT, picture)), picture
        assert os.path.getsize(os.path.join(ROOT, picture)) < 600_000, "keep the README picture small"
    assert "Apache-2.0" in top and "LICENSE" in top
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))
    assert "research" in top.lower() and "diagnosis" in top


def test_library_is_installed_next_to_the_module():
    text = read("CMakeLists.txt")
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\)\s*$", text, re.S | re.M).group(1)
    assert "TARGET_NAME MedDiffFMLib" in call
    assert "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in call and "NO_INSTALL_SUBDIR" in call
    assert "MedDiffFMLib/*.py" in text
    assert os.path.isfile(os.path.join(ROOT, "MedDiffFMLib", "__init__.py"))


def test_module_cmake_lists_every_script_and_resource():
    text = read("MedDiffFM", "CMakeLists.txt")
    assert "slicerMacroBuildScriptedModule(" in text
    listed = set(cmakeList(text, "MODULE_PYTHON_SCRIPTS")) | set(cmakeList(text, "MODULE_PYTHON_RESOURCES"))
    onDisk = set()
    for folder, dirs, files in os.walk(MODULE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name == "CMakeLists.txt" or name.endswith((".pyc", ".pyo")):
                continue
            onDisk.add(os.path.relpath(os.path.join(folder, name), MODULE).replace(os.sep, "/"))
    assert onDisk - listed == set(), "files under MedDiffFM/ missing from MedDiffFM/CMakeLists.txt"
    assert listed - onDisk == set(), "MedDiffFM/CMakeLists.txt lists files that do not exist"


def test_extensions_index_entry():
    entry = json.loads(read("MedDiffFM.json"))
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-")
    assert entry["category"] == "Filtering"
    assert entry["scm_url"].startswith(HOMEPAGE)
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["build_subdirectory"] == "."
    assert set(entry) <= {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision",
                          "scm_type", "scm_url", "tier", "enabled"}


def test_icons_are_128_pixel_pngs():
    for path in (os.path.join(MODULE, "Resources", "Icons", "MedDiffFM.png"),
                 os.path.join(ROOT, "Resources", "Icons", "MedDiffFM.png")):
        assert pngSize(path) == (128, 128)


def test_module_file_declares_module_widget_logic_and_test_and_stays_thin():
    source = read("MedDiffFM", "MedDiffFM.py")
    tree = ast.parse(source)
    classes = {node.name: [ast.unparse(b) for b in node.bases] for node in tree.body if isinstance(node, ast.ClassDef)}
    assert classes["MedDiffFM"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["MedDiffFMWidget"]
    assert "ScriptedLoadableModuleLogic" in classes["MedDiffFMLogic"]
    assert classes["MedDiffFMTest"] == ["ScriptedLoadableModuleTest"]
    # Title, category, citation and help are checked on the loaded module (test_slicer_module.py).
    assert len(source.splitlines()) < 260, "MedDiffFM.py must stay thin: logic goes to MedDiffFMModuleLib"


@pytest.mark.parametrize("name", ["MedDiffFM.py"] + [f"MedDiffFMModuleLib/{n}" for n in sorted(
    os.listdir(os.path.join(MODULE, "MedDiffFMModuleLib"))) if n.endswith(".py")])
def test_module_sources_compile(name):
    path = os.path.join(MODULE, *name.split("/"))
    with open(path, encoding="utf-8") as f:
        compile(f.read(), path, "exec")


def test_library_has_no_slicer_qt_or_vtk_import():
    """The architecture rule seen from the module side: only MedDiffFM/ talks to Slicer."""
    offenders = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, "MedDiffFMLib")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if re.search(r"^\s*(import|from)\s+(slicer|qt|vtk|ctk)\b", text, re.M):
                    offenders.append(os.path.join(folder, name))
    assert offenders == []


def test_shipped_model_cards_say_research_use_only():
    cards = sorted(glob.glob(os.path.join(ROOT, "Resources", "Models", "*", "MODEL_CARD.md")))
    assert len(cards) >= 3
    for card in cards:
        text = read(os.path.relpath(card, ROOT))
        assert "## Intended use: research only" in text, card
        flowing = " ".join(text.split())  # cards written by hand wrap lines; exported ones do not
        assert "synthetic or altered image" in flowing and "not for diagnosis" in flowing, card
