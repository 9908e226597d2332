"""Write the library's task export (what ``meddifffm info --json`` prints under ``"tasks"``) into
the Slicer module's ``Resources/library-tasks.json``, the copy the module reads until it has asked
the library. ``Testing/test_slicer_tasks.py`` checks that the copy is the library's.

    python -m tools.export_tasks
"""

from __future__ import annotations

import json
from pathlib import Path

from MedDiffFMLib.tasks.registry import export_tasks

TARGET = Path(__file__).resolve().parents[1] / "MedDiffFM" / "Resources" / "library-tasks.json"


def main() -> None:
    TARGET.write_text(json.dumps(export_tasks(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"Wrote {TARGET}")


if __name__ == "__main__":
    main()
