"""Write ``MedDiffFM.s4ext``, the extension description file, from the metadata set once in
``CMakeLists.txt`` (``EXTENSION_*``). Slicer's extension build generates the same description
from those variables; the committed file keeps the project's layout whole for tools and readers
that look for it. Edit ``CMakeLists.txt``, then run ``python scripts/write_s4ext.py``;
``Testing/test_slicer_extension_files.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S4EXT = ROOT / "MedDiffFM.s4ext"


def cmake_variables(text: str) -> dict[str, str]:
    """The ``set(NAME "value")`` and ``string(REPLACE ...)`` variables of the extension metadata, expanded."""
    values: dict[str, str] = {}

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), value)

    for match in re.finditer(r'^\s*(set|string)\((.*?)\)\s*(?:#.*)?$', text, flags=re.M):
        kind, body = match.groups()
        if kind == "set":
            parts = re.match(r'(\w+)\s+"(.*)"$', body.strip())
            if parts:
                values[parts.group(1)] = expand(parts.group(2))
        else:
            parts = re.match(r'REPLACE\s+"(.*?)"\s+"(.*?)"\s+(\w+)\s+"(.*)"$', body.strip())
            if parts:
                old, new, name, source = parts.groups()
                values[name] = expand(source).replace(old, new)
    return values


def s4ext_text(cmake_text: str) -> str:
    """The description file's text for the metadata in ``cmake_text``."""
    v = cmake_variables(cmake_text)
    fields = [
        ("scm", "git"),
        ("scmurl", v["EXTENSION_HOMEPAGE"] + ".git"),
        ("scmrevision", v["EXTENSION_BRANCH"]),
        ("depends", v["EXTENSION_DEPENDS"]),
        ("build_subdirectory", "."),
        ("homepage", v["EXTENSION_HOMEPAGE"]),
        ("contributors", v["EXTENSION_CONTRIBUTORS"]),
        ("category", v["EXTENSION_CATEGORY"]),
        ("iconurl", v["EXTENSION_ICONURL"]),
        ("status", "Beta"),
        ("description", v["EXTENSION_DESCRIPTION"]),
        ("screenshoturls", v["EXTENSION_SCREENSHOTURLS"]),
        ("enabled", "1"),
    ]
    header = ("# Generated from CMakeLists.txt by scripts/write_s4ext.py: edit CMakeLists.txt, not this file.\n"
              "# First token of each line is the keyword, the rest of the line its value.\n")
    return header + "".join(f"{key} {value}\n" for key, value in fields)


def main() -> int:
    S4EXT.write_text(s4ext_text((ROOT / "CMakeLists.txt").read_text()))
    print(f"wrote {S4EXT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
