"""The versions record and the summary of ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_check_report.py versions --out WORK/versions.json
    python benchmarks/gpu_check_report.py summary --work WORK --out OUT [--dry-run 1] [--elapsed SECONDS]

``summary`` reads what the check's stages left in WORK (stages.jsonl, versions.json, the pytest JUnit
files, and the JSON results of bench_kernels.py, bench_lrwa_step.py and bench_trainer.py) and writes
OUT/summary.json (all of it), OUT/summary.md (the tables) and OUT/results.csv (one figure per row), then
prints summary.md. Exit status 1 when a stage failed, timed out or was not started for lack of time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

PACKAGES = ("torch", "triton", "torchvision", "numpy", "click", "rich", "higher", "fastlrwa")
PHASES = ("generator_step", "student_batch", "student_update", "other")
INCOMPLETE = ("failed", "timeout")


# ----- versions ------------------------------------------------------------------------------------------------------
def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    import torch

    record: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": os.environ.get("GPU_CHECK_COMMIT") or _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        record.update(
            gpu=properties.name,
            capability=f"{properties.major}.{properties.minor}",
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            driver=_command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        )
    return record


# ----- reading the stages' results ------------------------------------------------------------------------------------
def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_stages(work: Path) -> list[dict[str, Any]]:
    """The last record of each stage, in the order the stages first ran."""
    path = work / "stages.jsonl"
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        latest.pop(record["stage"], None)
        latest[record["stage"]] = record
    return sorted(latest.values(), key=lambda record: record["at"])


def load_tests(work: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted((work / "tests").glob("junit-*.xml")):
        cases = ElementTree.parse(path).getroot().iter("testcase")
        passed, failed, skipped = [], [], {}
        for case in cases:
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            problem = case.find("failure") if case.find("failure") is not None else case.find("error")
            if problem is not None:
                failed.append(
                    {
                        "test": name,
                        "message": (problem.get("message") or "").splitlines()[0][:300]
                        if problem.get("message")
                        else "",
                    }
                )
            elif case.find("skipped") is not None:
                reason = (case.find("skipped").get("message") or "skipped").splitlines()[0]
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                passed.append(name)
        runs.append(
            {"stage": path.stem.removeprefix("junit-"), "passed": len(passed), "failed": failed, "skipped": skipped}
        )
    return runs


def load_kernels(work: Path) -> list[dict[str, Any]]:
    return [{"run": path.parent.name, **_json(path)} for path in sorted((work / "kernels").glob("*/kernels*.json"))]


def load_lrwa(work: Path) -> list[dict[str, Any]]:
    return [{"run": path.parent.name, **_json(path)} for path in sorted((work / "lrwa").glob("*/lrwa_*.json"))]


def load_prewarm(work: Path) -> dict[str, Any]:
    compiles = {}
    for path in sorted((work / "prewarm").glob("lrwa-*/lrwa_*_compile.json")):
        for row in _json(path)["rows"]:
            compiles[row["variant"]] = {key: row.get(key) for key in ("first_call_s", "second_call_s", "error")}
    trainer = [
        run for path in sorted((work / "prewarm" / "trainer").glob("trainer_*.json")) for run in _json(path)["runs"]
    ]
    return {"lrwa_compile": compiles, "trainer": trainer}


def load_trainer(work: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted((work / "trainer").glob("*/trainer_*.json")):
        result = _json(path)
        runs += [{"device": result["device"], "tiny": result["tiny"], **run} for run in result["runs"]]
    return runs


# ----- the summary ----------------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], align: str) -> list[str]:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    rule = ["---" if side == "l" else "---:" for side in align]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rule) + "|",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def _one_line(text: str, limit: int) -> str:
    """``text`` fit for a markdown table cell: one line, no pipes, at most ``limit`` characters."""
    return " / ".join(line.strip() for line in text.splitlines() if line.strip()).replace("|", "/")[:limit]


def stage_lines(stages: list[dict[str, Any]]) -> list[str]:
    rows = [
        (
            s["stage"],
            s["status"],
            s["seconds"],
            s.get("cpu_s", "—"),
            s["limit_s"] or "—",
            s["expected"] or "—",
            _one_line(s["note"], 200),
        )
        for s in stages
    ]
    return _table(("stage", "status", "s", "CPU s", "limit s", "expected", "note"), rows, "llrrrll")


def test_lines(tests: list[dict[str, Any]]) -> list[str]:
    lines = []
    for run in tests:
        skipped = sum(run["skipped"].values())
        lines.append(
            f"- `{run['stage']}`: {run['passed']} passed, {len(run['failed'])} failed, {skipped} skipped"
            + (f" ({'; '.join(f'{n}: {reason}' for reason, n in run['skipped'].items())})" if skipped else "")
        )
        lines += [f"  - FAILED {failure['test']}: {failure['message']}" for failure in run["failed"]]
    return lines


def kernel_lines(kernels: list[dict[str, Any]]) -> list[str]:
    lines = []
    for result in kernels:
        rows = result["results"]
        copy = f": device-to-device copy {result['copy_gb_per_s']} GB/s" if "copy_gb_per_s" in result else ""
        lines += [f"`{result['run']}` on {result['device']}{copy}", ""]
        by_case: dict[tuple, dict[str, dict[str, Any]]] = {}
        for row in rows:
            by_case.setdefault((row["loss"], row["mode"], row["dtype"], row["rows"], row["cols"]), {})[
                row["provider"]
            ] = row
        table = []
        for (loss, mode, dtype, n, c), providers in by_case.items():
            triton, eager, compiled = (providers.get(name) for name in ("triton", "torch", "torch.compile"))
            table.append(
                (
                    loss,
                    mode,
                    dtype,
                    n,
                    c,
                    _fmt(eager and eager["median_ms"], ".4f"),
                    _fmt(compiled and compiled["median_ms"], ".4f"),
                    _fmt(triton and triton["median_ms"], ".4f"),
                    _fmt(triton and triton["percent_of_copy_bandwidth"]),
                    _fmt(triton and eager and eager["median_ms"] / triton["median_ms"], ".2f"),
                    _fmt(triton and compiled and compiled["median_ms"] / triton["median_ms"], ".2f"),
                )
            )
        lines += _table(
            (
                "loss",
                "mode",
                "dtype",
                "N",
                "C",
                "eager ms",
                "compile ms",
                "triton ms",
                "triton % copy BW",
                "triton × eager",
                "triton × compile",
            ),
            table,
            "lllrrrrrrrr",
        )
        lines += [f"- {goal}" for goal in result.get("goal", [])] + [""]
    return lines


def lrwa_lines(lrwa: list[dict[str, Any]], prewarm: dict[str, Any]) -> list[str]:
    lines = []
    for result in lrwa:
        lines.append(
            f"`{result['run']}`: size {result['size']} ({result['shape']['student']}, batch "
            f"{result['shape']['batch']} + {result['shape']['memory']}), objective {result['objective']}, "
            f"amp {result.get('amp') or 'off'}, {result['device']}; median of {result['repeats']}"
        )
        lines.append("")
        rows = {row["variant"]: row for row in result["rows"]}
        table = []
        for name, row in rows.items():
            base = rows.get(row["baseline"], {})
            extra = (
                (row["peak_bytes"] - base["peak_bytes"]) / 2**20
                if row.get("peak_bytes") is not None and base.get("peak_bytes") is not None
                else None
            )
            table.append(
                (
                    name,
                    _fmt(row["median_s"] and 1e3 * row["median_s"]),
                    _fmt(row["time_ratio"], ".2f"),
                    _fmt(row["peak_bytes"] and row["peak_bytes"] / 2**20, ".0f"),
                    _fmt(extra, "+.0f"),
                    _fmt(row.get("first_call_s"), ".1f"),
                    _fmt(prewarm["lrwa_compile"].get(name, {}).get("first_call_s"), ".1f"),
                    _one_line(row.get("error") or "", 120),
                )
            )
        lines += _table(
            (
                "variant",
                "median ms",
                "× joint",
                "peak MiB",
                "MiB over joint",
                "first call s",
                "cold compile s",
                "error",
            ),
            table,
            "lrrrrrrl",
        )
        lines += [f"- {name}: {reason}" for name, reason in result.get("skipped", {}).items()] + [""]
    return lines


def trainer_lines(runs: list[dict[str, Any]]) -> list[str]:
    table = []
    for run in runs:
        train, harness = run["train"], run.get("harness", {})
        share = harness.get("phase_share", {})
        peak_train = train.get("peak_memory_mib") if train.get("peak_memory_mib") is not None else None
        epochs = ", ".join(_fmt(epoch["epoch_time_s"], ".1f") for epoch in train["epochs"])
        table.append(
            (
                f"{run['setup']} {run['mode']}",
                run.get("student_arch", "—"),
                run.get("batch", "—"),
                _fmt(train.get("samples_per_s"), ".0f"),
                _fmt(harness.get("samples_per_s"), ".0f"),
                _fmt(harness.get("iteration_s") and 1e3 * harness["iteration_s"]),
                *(_fmt(share.get(phase) and 100 * share[phase]) for phase in PHASES),
                _fmt(peak_train, ".0f"),
                _fmt(harness.get("peak_memory_mib"), ".0f"),
                _fmt(train.get("peak_rss_mib"), ".0f"),
                epochs or "—",
            )
        )
    lines = _table(
        (
            "run",
            "student",
            "batch",
            "samples/s train",
            "samples/s harness",
            "iteration ms",
            "gen step %",
            "student batch %",
            "student upd %",
            "other %",
            "peak MiB train",
            "peak MiB harness",
            "peak RSS MiB",
            "epoch times s",
        ),
        table,
        "llrrrrrrrrrrrrl",
    )
    for run in runs:
        for part, record in (("fastlrwa train", run["train"]), ("harness", run.get("harness", {}))):
            if record.get("error"):
                lines.append(f"- {run['setup']} {run['mode']}, {part} failed: {_one_line(record['error'], 300)}")
    return lines


def summary(work: Path, dry_run: bool, elapsed: int | None) -> tuple[dict[str, Any], str, list[list[Any]]]:
    versions_record = _json(work / "versions.json") if (work / "versions.json").exists() else {}
    data = {
        "dry_run": dry_run,
        "elapsed_s": elapsed,
        "versions": versions_record,
        "stages": load_stages(work),
        "tests": load_tests(work),
        "kernels": load_kernels(work),
        "lrwa": load_lrwa(work),
        "prewarm": load_prewarm(work),
        "trainer": load_trainer(work),
    }
    packages = versions_record.get("packages", {})
    machine = versions_record.get("gpu") or "no GPU"
    title = "DRY RUN on the CPU (tiny sizes; no GPU figures)" if dry_run else machine
    lines = [
        f"# fastlrwa GPU check: {title}",
        "",
        f"{versions_record.get('date', '?')}; commit {versions_record.get('commit') or 'unknown'}; "
        f"torch {packages.get('torch')} (CUDA {versions_record.get('torch_cuda')}, cuDNN "
        f"{versions_record.get('cudnn')}), triton {packages.get('triton')}, Python {versions_record.get('python')}, "
        f"higher {packages.get('higher') or 'not installed'}; GPU {machine}"
        + (
            f" (sm {versions_record['capability']}, {versions_record['gpu_memory_gib']} GiB, driver "
            f"{versions_record.get('driver')})"
            if "capability" in versions_record
            else ""
        )
        + (f"; {elapsed} s in all" if elapsed is not None else ""),
        "",
        "## Stages",
        "",
        *stage_lines(data["stages"]),
        "",
    ]
    if data["tests"]:
        lines += ["## CUDA tests (pytest -m gpu)", "", *test_lines(data["tests"]), ""]
    if data["kernels"]:
        lines += ["## Loss kernels (bench_kernels.py)", "", *kernel_lines(data["kernels"])]
    if data["lrwa"]:
        lines += [
            "## LRWA student step (bench_lrwa_step.py)",
            "",
            "MiB over joint: `max_memory_allocated` during the step minus the joint step's (the paper: "
            "about +40 MB); first call: with the compilation from the warmed caches; cold compile: the "
            "prewarm stage's first call (several compiles at once).",
            "",
            *lrwa_lines(data["lrwa"], data["prewarm"]),
        ]
    if data["trainer"]:
        lines += ["## fastlrwa train end to end (bench_trainer.py)", "", *trainer_lines(data["trainer"]), ""]
    missing = [
        f"- {s['stage']}: {s['status']}" + (f" ({_one_line(s['note'], 200)})" if s["note"] else "")
        for s in data["stages"]
        if s["status"] != "ok"
    ]
    if missing:
        lines += ["## Not measured or not passed", "", *missing, ""]
    return data, "\n".join(lines) + "\n", list(csv_rows(data))


def csv_rows(data: dict[str, Any]) -> Iterable[list[Any]]:
    yield ["section", "name", "metric", "value"]
    for stage in data["stages"]:
        yield ["stage", stage["stage"], "status", stage["status"]]
        yield ["stage", stage["stage"], "seconds", stage["seconds"]]
    for result in data["kernels"]:
        for row in result["results"]:
            name = f"{row['loss']} {row['mode']} {row['provider']} {row['dtype']} N={row['rows']} C={row['cols']}"
            yield ["kernels", name, "median_ms", row["median_ms"]]
            if row.get("percent_of_copy_bandwidth") is not None:
                yield ["kernels", name, "percent_of_copy_bandwidth", row["percent_of_copy_bandwidth"]]
    for result in data["lrwa"]:
        for row in result["rows"]:
            name = f"{result['run']} {row['variant']}"
            for metric in ("median_s", "time_ratio", "peak_bytes", "peak_memory_ratio", "first_call_s"):
                if row.get(metric) is not None:
                    yield ["lrwa", name, metric, row[metric]]
    for run in data["trainer"]:
        name = f"{run['setup']} {run['mode']}"
        for metric in ("samples_per_s", "peak_memory_mib", "peak_rss_mib", "wall_s"):
            if run["train"].get(metric) is not None:
                yield ["trainer_train", name, metric, run["train"][metric]]
        harness = run.get("harness", {})
        for metric in ("samples_per_s", "iteration_s", "peak_memory_mib"):
            if harness.get(metric) is not None:
                yield ["trainer_harness", name, metric, harness[metric]]
        for phase, share in harness.get("phase_share", {}).items():
            yield ["trainer_harness", name, f"share_{phase}", share]


def incomplete(stages: list[dict[str, Any]]) -> list[str]:
    return [
        s["stage"]
        for s in stages
        if s["status"] in INCOMPLETE or (s["status"] == "skipped" and s["note"].startswith("not started"))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    versions_parser = commands.add_parser("versions")
    versions_parser.add_argument("--out", type=Path, required=True)
    summary_parser = commands.add_parser("summary")
    summary_parser.add_argument("--work", type=Path, required=True)
    summary_parser.add_argument("--out", type=Path, required=True)
    summary_parser.add_argument("--dry-run", type=int, choices=(0, 1), default=0)
    summary_parser.add_argument("--elapsed", type=int, default=None)
    args = parser.parse_args(argv)

    if args.command == "versions":
        record = versions()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
        print(json.dumps(record))
        return 0

    data, markdown, rows = summary(args.work, bool(args.dry_run), args.elapsed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(data, indent=1))
    (args.out / "summary.md").write_text(markdown)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    (args.out / "results.csv").write_text(buffer.getvalue())
    print(markdown)
    unfinished = incomplete(data["stages"])
    if unfinished:
        print(f"incomplete: {', '.join(unfinished)}", file=sys.stderr)
    return 1 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
