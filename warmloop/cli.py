"""The `warmloop` command line: one entry point, one subcommand per job.

Every subcommand is a row of COMMANDS: its name, a help line, and the module of the
package that owns it, which holds `add_arguments(parser)` and `main_from_args(args)`.
Only the parser of the subcommand that runs is built, and only its module is imported:
`warmloop --help` imports neither torch nor MuJoCo, and `warmloop deploy` runs where
neither is installed. (Each package cannot keep its own registry module: importing
anything in `sim` registers the MuJoCo scenes, which imports MuJoCo.)

A subcommand with one module per first argument (`train TASK`, `demo NAME`) has one row
per variant; `warmloop train --help` lists them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from warmloop import __version__

EXIT_USAGE = 2

# The extra of pyproject.toml that installs each optional top-level module: a command
# whose module is missing names the extra to install instead of a traceback.
EXTRA_OF_MODULE = {
    "onnxruntime": "deploy",
    "mujoco": "sim",
    "gymnasium": "sim",
    "imageio": "sim",
    "tqdm": "sim",
    "mcap": "record",
    "torch": "train",
    "safetensors": "train",
    "onnx": "train",
    "zarr": "train",
    "open3d": "viz",
    "matplotlib": "viz",
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra that would install the module `error` is about, if it is one of ours."""
    return EXTRA_OF_MODULE.get((error.name or "").split(".")[0])


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str  # imported only when the command runs
    variant: str = ""  # the first argument this row serves (train pickplace, demo explore)
    default: bool = False  # the variant used when the first argument is left out
    add: str = "add_arguments"  # the module's functions, when it serves several commands
    run: str = "main_from_args"

    def handlers(self):
        module = importlib.import_module(self.module)
        return getattr(module, self.add), getattr(module, self.run)


POLICY_TRAINING = "train a diffusion policy on an expert dataset"
COMMANDS = (
    Command("collect", "collect expert demonstrations into a dataset", "sim.collect"),
    Command("train", POLICY_TRAINING, "policies.diffusion.cli", variant="pickplace"),
    Command("train", POLICY_TRAINING, "policies.diffusion.cli", variant="pusht"),
    Command("train", POLICY_TRAINING, "policies.diffusion.cli", variant="panda-pickplace"),
    Command("train", POLICY_TRAINING, "policies.diffusion.cli", variant="panda-pusht"),
    Command(
        "train",
        "train the world generator (the multi-step teacher)",
        "world.generation.cli",
        variant="explore",
        add="add_train_arguments",
        run="train_main",
    ),
    Command(
        "distill",
        "distil the world generator into a few-step student (DMD)",
        "world.generation.cli",
        add="add_distill_arguments",
        run="distill_main",
    ),
    Command(
        "eval", "evaluate a checkpoint or an export in simulation", "policies.diffusion.eval_cli"
    ),
    Command(
        "calibrate-rti",
        "choose the RTI warm-start step K' for a checkpoint; store it with the way the "
        "candidates entered and denoised the chain",
        "policies.diffusion.calibrate",
    ),
    Command("export", "export a checkpoint to ONNX", "policies.deploy.export"),
    Command(
        "deploy",
        "run an exported policy as the policy node, without torch",
        "policies.node",
        add="add_deploy_arguments",
        run="deploy_main",
    ),
    Command(
        "serve",
        "serve an exported policy to robots: observation in, action chunk out (req/rep)",
        "policies.serve",
    ),
    Command("launch", "run a launch graph", "runtime.launch"),
    Command("replay", "republish an MCAP recording", "streams.replay"),
    Command("view", "view frames and 4D reconstructions", "viz.viewer"),
    Command("drive", "drive a world node's camera from the keyboard", "viz.drive"),
    Command("bench", "run a benchmark and record its figures", "benchmarks.harness"),
    Command(
        "demo",
        "the manipulation demo: sim, RTI policy and recorder over ZeroMQ",
        "warmloop.demos.manipulation",
        variant="manipulation",
        default=True,
    ),
    Command(
        "demo",
        "the world-model demo: generate, reconstruct, guide",
        "warmloop.demos.explore",
        variant="explore",
    ),
)


class _Parser(argparse.ArgumentParser):
    """argparse with one clear error line instead of the usage block, exit code 2, and
    no abbreviated flags (`--episode` is not `--episodes`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _names() -> list[str]:
    return list(dict.fromkeys(command.name for command in COMMANDS))


def _rows(name: str) -> list[Command]:
    return [command for command in COMMANDS if command.name == name]


def _first_positional(argv: Sequence[str]) -> int | None:
    """Index of the first argument that is not an option, or None."""
    return next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)


def _usage_error(message: str) -> int:
    sys.stderr.write(f"warmloop: error: {message} (see `warmloop --help`)\n")
    return EXIT_USAGE


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def build_parser(name: str | None = None, command: Command | None = None) -> _Parser:
    """The top-level parser; with `name`, that subcommand's variants, and with `command`,
    the arguments of the one that runs."""
    parser = _Parser(
        prog="warmloop",
        description="Real-time runtime for warm-started diffusion policies and 4D world models.",
    )
    parser.add_argument("--version", action="version", version=f"warmloop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for each in _names():
        rows = _rows(each)
        summary = rows[0].help if len(rows) == 1 else " | ".join(r.variant for r in rows)
        p = sub.add_parser(each, help=summary, description=summary)
        if each == name:
            _add_command(p, rows, command)
    return parser


def _add_command(parser: _Parser, rows: list[Command], command: Command | None) -> None:
    if not rows[0].variant:
        if command is not None:
            command.handlers()[0](parser)
        return
    # One nested parser per variant; only the one that runs gets its arguments.
    variants = parser.add_subparsers(dest="variant", metavar="NAME", parser_class=_Parser)
    for row in rows:
        p = variants.add_parser(row.variant, help=row.help, description=row.help)
        if row is command:
            row.handlers()[0](p)


def _choose(argv: list[str]) -> tuple[str | None, Command | None, list[str]] | int:
    """The command named, the row that will run, and argv with a left-out default
    variant filled in; an exit code after a usage error."""
    index = _first_positional(argv)
    if index is None:
        return None, None, argv
    name = argv[index]
    rows = _rows(name)
    if not rows:
        return _usage_error(f"unknown command {name!r}{_suggest(name, _names())}")
    if not rows[0].variant:
        return name, rows[0], argv
    rest = argv[index + 1 :]
    where = _first_positional(rest)
    variant = rest[where] if where is not None else None
    chosen = next((r for r in rows if r.variant == variant), None)
    if chosen is not None:
        return name, chosen, argv
    default = next((r for r in rows if r.default), None)
    asks_help = bool(rest) and rest[0] in ("-h", "--help")
    if default is not None and not asks_help and (not rest or rest[0].startswith("-")):
        return name, default, [*argv[: index + 1], default.variant, *rest]
    if "-h" in rest or "--help" in rest:  # `warmloop train --help`: list the variants
        return name, None, argv
    known = [r.variant for r in rows]
    got = "nothing" if variant is None else repr(variant)
    return _usage_error(f"{name} needs one of {known}, got {got}{_suggest(variant or '', known)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _choose(argv)
    if isinstance(chosen, int):
        return chosen
    name, command, argv = chosen
    try:
        args = build_parser(name, command).parse_args(argv)
    except ModuleNotFoundError as error:  # the command's module imports a missing extra
        return _needs_extra(name, error)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # PyOpenGL's "No OpenGL_accelerate module loaded" on every run
        logging.getLogger("OpenGL").setLevel(logging.WARNING)
    if command is None:
        build_parser().print_help()
        return EXIT_USAGE
    args.command_line = shlex.join(["warmloop", *argv])  # for results that record it
    try:
        return command.handlers()[1](args)
    except ModuleNotFoundError as error:  # a module imported late, when the command runs
        return _needs_extra(name, error)


def _needs_extra(name: str | None, error: ModuleNotFoundError) -> int:
    extra = missing_extra(error)
    if extra is None:
        raise error
    sys.stderr.write(
        f"warmloop {name} needs the [{extra}] extra ({error.name} is not installed): "
        f"pip install 'warmloop[{extra}]'\n"
    )
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
