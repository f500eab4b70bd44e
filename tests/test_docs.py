"""The docs and the code speak of the project (dates, commits, commands), not of its work tracking, and cite
only files the repository holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACKER_REFERENCE = re.compile(r"\bissues?[\s_-]*#?\d+|\bthe issue('s)?\b", re.IGNORECASE)
CHECKED_SUFFIXES = {".md", ".py", ".sh", ".json", ".toml", ".yml", ".cpp", ".txt"}


def _tracked() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.split() if (ROOT / name).suffix in CHECKED_SUFFIXES]


def test_no_file_names_a_tracker_issue():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in _tracked()
        if "fixtures" not in path.parts
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if TRACKER_REFERENCE.search(line)
    ]
    assert found == []


def test_docs_cite_only_files_the_repository_holds():
    # A path into one of the repository's own folders, or a top-level document such as DESIGN.md; paths a
    # command writes (OUT/metrics.json, ROOT/report.md) start elsewhere and are not citations.
    folders = "|".join(re.escape(path.name) for path in ROOT.iterdir() if path.is_dir() and path.name != ".git")
    cited = re.compile(rf"\b((?:{folders})/[\w./-]+\.(?:md|py|sh|json|yml|toml|cpp))\b|\b([A-Z]{{3,}}\.md)\b")
    outputs = {"benchmarks/results/kernels.csv"}  # written by a benchmark when it runs
    missing = []
    for doc in ("README.md", "RESULTS.md", "BENCHMARKS.md"):
        for match in cited.finditer((ROOT / doc).read_text()):
            name = match.group(1) or match.group(2)
            if name not in outputs and name != "FILE.md" and not (ROOT / name).exists():
                missing.append(f"{doc}: {name}")
    assert missing == []
