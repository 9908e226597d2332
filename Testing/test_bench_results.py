"""benchmarks/results/ keeps the latest table of each benchmark, with history in git: every result file
the documents cite is there (or is cited with the commit that holds it), and a saved table names the
command that reruns it."""

import re
import sys
from pathlib import Path

from benchmarks import REPO_ROOT
from benchmarks.common import reporting

RESULTS = REPO_ROOT / "benchmarks" / "results"
# Where the results are cited: the READMEs, docs, model cards, the GPU-chunk tools and library comments.
CITING = ["README.md", "benchmarks/README.md", "docs", "Resources/Models", "tools/gpu_chunk", "MedDiffFMLib",
          "benchmarks"]
CITATION = re.compile(r"(?:benchmarks/)?results/([A-Za-z0-9_]+(?:\.md|\.json)?)")
IN_GIT = re.compile(r"git show [0-9a-f]{7,40}:benchmarks/results/\S+$|at commit [0-9a-f]{7,40}")


def _citations():
    files = set()
    for entry in CITING:
        root = REPO_ROOT / entry
        files |= {root} if root.is_file() else {p for p in root.rglob("*") if p.suffix in (".md", ".py")
                                                and "results" not in p.parts}
    for path in sorted(files):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in CITATION.finditer(line):
                name = match.group(1)
                placeholder = re.search(r"[A-Z]{3,}", name)  # NAME, seedN_ARMS
                if line[match.end():].startswith(("*", "<")) or placeholder or name == "main":  # a glob, a server route
                    continue
                yield path, number, line, match, name


def test_every_cited_result_file_is_there_or_cited_with_its_commit():
    missing = []
    for path, number, line, match, name in _citations():
        stem = name.rsplit(".", 1)[0] if name.endswith((".md", ".json")) else name
        if list(RESULTS.glob(stem + ".*")):
            continue
        if IN_GIT.search(line[:match.end()]) or IN_GIT.search(line[match.start():match.end() + 30]):
            continue
        missing.append(f"{path.relative_to(REPO_ROOT)}:{number}: {name}")
    assert not missing, "cited but not in benchmarks/results/ (cite it as `git show COMMIT:...`):\n" + "\n".join(missing)


def test_saved_tables_name_the_module_that_reruns_them(monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "benchmarks" / "studies" / "sampler_steps.py"), "--quick"])
    assert reporting.script_module() == "benchmarks.studies.sampler_steps"
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "benchmarks" / "speed.py")])
    assert reporting.script_module() == "benchmarks.speed"
    monkeypatch.setattr(sys, "argv", [str(Path("/elsewhere/denoise_quality.py"))])
    assert reporting.script_module() == "benchmarks.denoise_quality"
