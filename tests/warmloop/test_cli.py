from __future__ import annotations

import subprocess
import sys

import pytest

from warmloop.cli import COMMANDS, main


def _warmloop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warmloop.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_registered_command() -> None:
    result = _warmloop("--help")
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines() if line[:4] == "    " and line[4] != " "]
    listed = {row.split()[0] for row in rows}
    assert listed == {command.name for command in COMMANDS}


def _argv(command) -> list[str]:
    return [command.name, *([command.variant] if command.variant else [])]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(_argv(c)))
def test_every_command_and_variant_has_its_own_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*_argv(command), "--help"])
    assert exit_info.value.code == 0
    assert f"usage: warmloop {' '.join(_argv(command))}" in capsys.readouterr().out


def test_variants_are_listed_and_a_left_out_default_is_filled_in(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert all(task in out for task in ("pickplace", "pusht", "explore"))
    with pytest.raises(SystemExit):
        main(["demo", "--help"])  # demo alone is demo manipulation
    assert "--episodes" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--episodes", "0", "--help"])
    assert "usage: warmloop demo manipulation" in capsys.readouterr().out


def test_version() -> None:
    result = _warmloop("--version")
    assert result.returncode == 0 and result.stdout.startswith("warmloop 0.")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nope"], "unknown command 'nope'"),
        (["trian"], "did you mean 'train'"),
        (["train", "pickplac"], "did you mean 'pickplace'"),
        (["train"], "train needs one of"),
        (["bench", "--bad-flag", "streams"], "unrecognized arguments: --bad-flag"),
        (["bench"], "name a benchmark, or ask for --status"),
        (["eval", "x", "--episode", "3"], "unrecognized arguments: --episode"),  # no abbreviation
    ],
)
def test_bad_usage_gives_one_clear_line_and_exit_code_2(args: list[str], says: str) -> None:
    result = _warmloop(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["deploy", "--help"], ["launch", "--help"]])
def test_light_commands_import_neither_torch_nor_mujoco(args: list[str]) -> None:
    code = (
        "import sys, contextlib, io, warmloop.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    warmloop.cli.main({args!r})\n"
        "print(sorted({'torch', 'mujoco', 'open3d'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
