"""`fastlrwa sweep` without training: grid expansion, directory names, train command lines, per-directory
decisions (new, done, interrupted, restart, conflict) and the refusals, all before any process starts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastlrwa.cli import cli
from fastlrwa.commands import sweep as sweep_module
from fastlrwa.commands.sweep import SweepOptions, _sweep_lock, device_plan, run_sweep
from fastlrwa.commands.sweep_grid import Grid, cell_dir, parse_axis, parse_seeds
from fastlrwa.commands.sweep_state import CellState, inspect_cell
from fastlrwa.commands.train_argv import TrainArgv
from fastlrwa.config.schema import to_dict
from fastlrwa.errors import ConfigError
from fastlrwa.run_log.metrics_file import MetricsLog

TRAIN_ARGV = TrainArgv()


def _grid(
    tmp_path: Path,
    *,
    methods="lrwa-mb,mb-dfkd",
    seeds="0-2",
    axes=("generator.lr=1e-3,3e-3",),
    fixed=("schedule.epochs=3",),
    preset=None,
) -> Grid:
    return Grid.parse(
        preset=preset,
        methods=methods,
        seeds=seeds,
        axes=axes,
        fixed=fixed,
        root=str(tmp_path / "sw"),
        train_argv=TRAIN_ARGV,
    )


def test_seeds_accept_lists_and_ranges() -> None:
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    assert parse_seeds(" 4 ") == (4,)
    for bad in ("2-1", "a", "0,0-1", "", "1,,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_axis_values_take_the_config_type() -> None:
    assert parse_axis("generator.lr=1e-3, 0.003").values == (0.001, 0.003)
    epochs = parse_axis("schedule.epochs=2,5")
    assert epochs.values == (2, 5) and all(isinstance(v, int) for v in epochs.values)
    assert parse_axis("lrwa.objective=paper,official").values == ("paper", "official")
    for bad, problem in (
        ("generator.lr=1e-3,0.001", "gives one value twice"),
        ("generator.lr", "not KEY=VALUE"),
        ("generator.lr=fast", "not a valid float"),
        ("generator.nope=1", "unknown --set key"),
        ("method=dfad", "use --methods"),
        ("runtime.seed=1,2", "use --seeds"),
        ("runtime.out=x", "use --root"),
    ):
        with pytest.raises(ConfigError, match=problem):
            parse_axis(bad)


def test_grid_expands_seed_by_seed_with_stable_names(tmp_path) -> None:
    grid = _grid(tmp_path)
    cells = grid.cells()
    assert len(cells) == 2 * 2 * 3
    assert [(c.seed, dict(c.values)["generator.lr"], c.method) for c in cells[:4]] == [
        (0, 0.001, "lrwa-mb"),
        (0, 0.001, "mb-dfkd"),
        (0, 0.003, "lrwa-mb"),
        (0, 0.003, "mb-dfkd"),
    ]
    assert [c.seed for c in cells] == [0] * 4 + [1] * 4 + [2] * 4
    assert cells[2].run_dir == tmp_path / "sw" / "lrwa-mb" / "generator.lr=0.003" / "seed-0"
    assert cells[2].name == "lrwa-mb/generator.lr=0.003/seed-0"
    assert len({c.run_dir for c in cells}) == len(cells)
    # Another spelling of the same values finds the same directories.
    respelled = _grid(tmp_path, axes=("generator.lr=0.001,3E-3",)).cells()
    assert [c.run_dir for c in respelled] == [c.run_dir for c in cells]
    for cell in cells:
        assert cell.config.method == cell.method and cell.config.runtime.seed == cell.seed
        assert cell.config.generator.lr == dict(cell.values)["generator.lr"]
        assert cell.config.schedule.epochs == 3 and cell.config.runtime.out == str(cell.run_dir)


def test_no_axes_no_middle_level_and_the_presets_method(tmp_path) -> None:
    grid = _grid(tmp_path, methods=None, seeds="3", axes=(), fixed=(), preset="fashion-mnist")
    [cell] = grid.cells()
    assert cell.run_dir == tmp_path / "sw" / "mb-dfkd" / "seed-3" and cell.name == "mb-dfkd/seed-3"
    assert cell.config.data.dataset == "fashion-mnist"
    assert Grid.parse(
        preset="fashion-mnist", methods=None, seeds="0", axes=(), fixed=(), root=None, train_argv=TRAIN_ARGV
    ).root == Path("sweeps/fashion-mnist")


def test_several_axes_name_every_value_and_unsafe_values_are_kept_apart(tmp_path) -> None:
    grid = _grid(tmp_path, methods="dfad", seeds="0", axes=("schedule.batch_size=16,32", "loss.adv=0.5,2"))
    names = [cell.name for cell in grid.cells()]
    assert names == [
        f"dfad/schedule.batch_size={size},loss.adv={adv}/seed-0" for size in (16, 32) for adv in ("0.5", "2.0")
    ]
    first = cell_dir(tmp_path, "dfad", (("teacher.path", "/a/b c.pt"),), 0)
    second = cell_dir(tmp_path, "dfad", (("teacher.path", "/a/b_c.pt"),), 0)
    assert first.parent.name.startswith("teacher.path=_a_b_c.pt-") and first != second
    assert first.parent.parent == tmp_path / "dfad"


@pytest.mark.parametrize(
    "flags, problem",
    [
        ({"axes": ("generator.beta1=0.5,0.9",)}, "--set generator.beta1: `fastlrwa train` has no flag"),
        ({"fixed": ("schedule.epochs=0",)}, "schedule.epochs=0: must be > 0"),
        ({"fixed": ("schedule.epochs=3", "schedule.epochs=4")}, "given twice with --fix"),
        ({"axes": ("generator.lr=1e-3",), "fixed": ("generator.lr=1e-2",)}, "generator.lr is given more than once"),
        ({"methods": "lrwa-mb,nope"}, "unknown method 'nope'"),
        ({"methods": "dfad,dfad"}, "give each method once"),
    ],
)
def test_bad_grids_fail_before_anything_runs(tmp_path, flags, problem) -> None:
    with pytest.raises(ConfigError, match=problem) as error:
        _grid(tmp_path, **flags).cells()
    assert "\n" not in str(error.value) and not (tmp_path / "sw").exists()


def test_train_command_resolves_to_the_cells_config(tmp_path, monkeypatch) -> None:
    """Each printed `fastlrwa train` line, parsed by the real train command, gives exactly the cell's config
    (value flags, the --compile/--no-compile switch, the --amp-dtype choice, the --trust-pickle flag)."""
    grid = _grid(
        tmp_path,
        methods="lrwa-mb,dfq",
        seeds="1,4",
        axes=("runtime.compile=true,false", "student.lr=0.05,0.125"),
        fixed=(
            "runtime.amp=bf16",
            "teacher.trust_pickle=true",
            "lrwa.objective=paper",
            "schedule.batch_size=48",
            "replay.slot_size=7",
        ),
    )
    captured = []
    monkeypatch.setattr("fastlrwa.commands.train.run_train", lambda config, **kwargs: captured.append((config, kwargs)))
    cells = grid.cells()
    for cell in cells:
        argv = grid.train_command(cell, TRAIN_ARGV)
        assert argv[0] == "train"
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
        config, kwargs = captured[-1]
        assert to_dict(config) == to_dict(cell.config)
        assert kwargs["resume"] is False and kwargs["force"] is False
    assert len(captured) == len(cells) == 16
    resumed = grid.train_command(cells[0], TRAIN_ARGV, "--resume")
    CliRunner().invoke(cli, resumed)
    assert captured[-1][1]["resume"] is True


def test_an_override_no_flag_can_say_is_refused_unless_it_is_the_presets(tmp_path) -> None:
    keep = _grid(tmp_path, axes=(), fixed=("teacher.trust_pickle=false",))
    argv = keep.train_command(keep.cells()[0], TRAIN_ARGV)
    assert "--trust-pickle" not in argv
    # A preset that trusted pickles could not be switched back by any train flag (--trust-pickle only says true).
    with pytest.raises(
        ConfigError, match="teacher.trust_pickle=false cannot be said with `fastlrwa train`'s --trust-pickle flag"
    ):
        TRAIN_ARGV.argv({"teacher.trust_pickle": False}, {"teacher.trust_pickle": True})
    assert TRAIN_ARGV.argv({"runtime.amp": "none"}, {"runtime.amp": "auto"}) == ["--amp-dtype", "none"]
    assert TRAIN_ARGV.argv({"runtime.amp": "fp16", "runtime.compile": False}, {}) == [
        "--amp-dtype",
        "fp16",
        "--no-compile",
    ]


def _write_run(cell, epochs_logged: int, *, checkpoint: bool, config=None) -> None:
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    (cell.run_dir / "config.json").write_text(
        json.dumps(
            {
                "method": cell.method,
                "dataset": "digits",
                "seed": cell.seed,
                "epochs": cell.config.schedule.epochs,
                "config": config if config is not None else to_dict(cell.config),
            }
        )
    )
    log = MetricsLog(cell.run_dir)
    for epoch in range(1, epochs_logged + 1):
        log.append({"epoch": epoch, "test_accuracy": 10.0 + epoch})
    if checkpoint:
        (cell.run_dir / "checkpoint.pt").write_bytes(b"not read by the sweep")


def test_each_directory_state(tmp_path) -> None:
    cells = _grid(tmp_path, seeds="0-5", axes=()).cells()
    new, done, interrupted, restart, other, broken = cells[:6]
    (new.run_dir).mkdir(parents=True)
    (new.run_dir / "train.log").write_text("an earlier attempt's log only")
    _write_run(done, 3, checkpoint=True)
    _write_run(interrupted, 1, checkpoint=True)
    _write_run(restart, 0, checkpoint=False)
    changed = to_dict(other.config)
    changed["generator"]["lr"] = 0.5
    _write_run(other, 3, checkpoint=True, config=changed)
    _write_run(broken, 2, checkpoint=True)
    (broken.run_dir / "config.json").unlink()
    states = [inspect_cell(cell.run_dir, cell.config) for cell in cells[:6]]
    assert [s.state for s in states] == [
        CellState.NEW,
        CellState.DONE,
        CellState.INTERRUPTED,
        CellState.RESTART,
        CellState.CONFLICT,
        CellState.CONFLICT,
    ]
    assert states[2].epochs_done == 1 and states[1].epochs_done == 3
    assert "generator.lr is 0.5 there and 0.001 in this sweep" in states[4].problem
    assert "config.json is missing or unreadable" in states[5].problem
    assert inspect_cell(cells[6].run_dir, cells[6].config).state is CellState.NEW


def test_run_local_keys_and_new_config_keys_do_not_conflict(tmp_path) -> None:
    [cell] = _grid(tmp_path, seeds="0", methods="dfad", axes=()).cells()
    saved = to_dict(cell.config)
    saved["runtime"].update(device="cuda:3", progress=True, compile=True, eval_batch_size=7, out="elsewhere")
    del saved["lrwa"]["align_every"]  # a key added since the run was written takes its default
    _write_run(cell, 3, checkpoint=True, config=saved)
    assert inspect_cell(cell.run_dir, cell.config).state is CellState.DONE


def _invoke(args):
    return CliRunner().invoke(cli, ["sweep", *args])


def _sweep_args(tmp_path) -> list[str]:
    """The sweep of ``_grid(tmp_path, seeds="0-1", axes=())`` as ``fastlrwa sweep`` arguments."""
    return [
        "--methods",
        "lrwa-mb,mb-dfkd",
        "--seeds",
        "0-1",
        "--fix",
        "schedule.epochs=3",
        "--root",
        str(tmp_path / "sw"),
    ]


def test_conflict_and_unrequested_resume_are_refused_with_one_line(tmp_path) -> None:
    grid_args = [*_sweep_args(tmp_path), "--device", "cpu"]
    cells = _grid(tmp_path, seeds="0-1", axes=()).cells()
    _write_run(cells[0], 3, checkpoint=True)
    _write_run(cells[1], 2, checkpoint=True)
    refused = _invoke(grid_args)
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        f"error: 1 run(s) of this sweep were interrupted (first: {cells[1].run_dir} after 2/3 epochs); "
        "pass --resume to continue them"
    ]

    other = _invoke([*grid_args[:-4], "--fix", "generator.width=16", *grid_args[-4:], "--resume"])
    assert other.exit_code == 2 and len(other.output.strip().splitlines()) == 1
    assert other.output.startswith(
        f"error: {cells[0].run_dir} is not this sweep's run: it holds another "
        "configuration: generator.width is 32 there and 16 in this sweep (and 1 more)"
    )
    assert "nothing was started" in other.output
    assert sorted(p.name for p in cells[0].run_dir.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]


def test_dry_run_prints_the_commands_left_to_run(tmp_path) -> None:
    cells = _grid(tmp_path, seeds="0-1", axes=()).cells()
    _write_run(cells[0], 3, checkpoint=True)  # done: skipped
    _write_run(cells[1], 1, checkpoint=True)  # interrupted: resumed
    _write_run(cells[2], 0, checkpoint=False)  # died before a checkpoint: restarted
    result = _invoke([*_sweep_args(tmp_path), "--resume", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("fastlrwa train --preset digits ") for line in lines)
    words = [shlex.split(line) for line in lines]
    assert [w[w.index("--out") + 1] for w in words] == [str(c.run_dir) for c in cells[1:4]]
    assert words[0][-1] == "--resume" and words[1][-1] == "--force" and words[2][-1] == "--no-progress"
    assert "4 runs, 1 finished, 3 to run (1 to resume)" in result.stderr
    assert not (tmp_path / "sw" / ".sweep.lock").exists()


def test_device_plan_defaults(monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert device_plan("cpu", jobs=None, threads=None) == (sweep_module.DevicePlan("cpu", 1), 5)
    assert device_plan("cpu", jobs=None, threads=2) == (sweep_module.DevicePlan("cpu", 2), 2)
    assert device_plan("cpu", jobs=3, threads=None)[1] == 3
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device_plan("auto", jobs=None, threads=None) == (sweep_module.DevicePlan("cuda", 1, ("0", "1", "2")), 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert device_plan("cuda", jobs=4, threads=None) == (sweep_module.DevicePlan("cuda", 1, ("5", "7")), 4)
    assert device_plan("cuda", jobs=1, threads=None)[0].threads == 5
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        device_plan("cuda", jobs=None, threads=None)
    with pytest.raises(ConfigError, match="--jobs 0 must be >= 1"):
        device_plan("cpu", jobs=0, threads=None)


def test_one_sweep_at_a_time_on_a_root(tmp_path) -> None:
    with _sweep_lock(tmp_path / "sw"):
        with pytest.raises(ConfigError, match="another fastlrwa sweep is running on"):
            with _sweep_lock(tmp_path / "sw"):
                pass
    with _sweep_lock(tmp_path / "sw"):
        pass
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=f"cannot write to {tmp_path / 'file' / 'sw'}: .*; choose a writable --root"):
        with _sweep_lock(tmp_path / "file" / "sw"):
            pass


def test_nothing_to_run_writes_the_table_without_starting_a_process(tmp_path, monkeypatch, capsys) -> None:
    grid = _grid(tmp_path, seeds="0-1", axes=())
    for cell in grid.cells():
        _write_run(cell, 3, checkpoint=True)
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("a finished run was started again"))
    run_sweep(grid, SweepOptions(device="cpu"), TRAIN_ARGV)
    captured = capsys.readouterr()
    assert "4 already finished, 0 to run" in captured.err
    assert "| lrwa-mb (2 seeds) |" in captured.out and "| lrwa-mb − mb-dfkd | 2 / 2 |" in captured.out
    assert json.loads((tmp_path / "sw" / "report.json").read_text())["aggregates"][0]["n_runs"] == 2
