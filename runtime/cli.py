"""The `warmloop` command line: one entry point, one subcommand per job.

Each subcommand's handler lives beside the code it drives and is imported only when the
subcommand runs, so `warmloop --help` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one clear error line instead of the usage block, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    # None while the subcommand is not built yet; then it names the issue that builds it.
    run: Callable[[argparse.Namespace], int] | None
    pending: str = ""


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _add_collect(p: argparse.ArgumentParser) -> None:
    # Declared here rather than in sim/, so that building the parser imports no MuJoCo.
    p.add_argument("task", help="pickplace, pusht or explore")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--out", type=Path, required=True, help="dataset directory (zarr)")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument(
        "--images", action="store_true", help="also record camera images (always on for explore)"
    )
    p.add_argument("--image-size", type=int, default=96)


def _run_collect(args: argparse.Namespace) -> int:
    from sim.collect import main_from_args

    return main_from_args(args)


def _add_train(p: argparse.ArgumentParser) -> None:
    from policies.diffusion.cli import add_arguments  # argparse only; torch comes later

    add_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from policies.diffusion.cli import main_from_args

    return main_from_args(args)


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint directory")


def _add_calibrate(p: argparse.ArgumentParser) -> None:
    from policies.diffusion.calibrate import add_arguments  # argparse only

    add_arguments(p)


def _run_calibrate(args: argparse.Namespace) -> int:
    from policies.diffusion.calibrate import main_from_args

    return main_from_args(args)


def _add_export(p: argparse.ArgumentParser) -> None:
    # Declared here, not in policies/deploy/export.py, which imports torch.
    p.add_argument("checkpoint", type=Path, help="a checkpoint directory (warmloop train)")
    p.add_argument("--out", type=Path, required=True, help="directory for the graphs")
    p.add_argument("--k-prime", type=int, default=None, help="default: the checkpoint's")


def _run_export(args: argparse.Namespace) -> int:
    from policies.deploy.export import main_from_args

    return main_from_args(args)


def _add_deploy(p: argparse.ArgumentParser) -> None:
    from runtime.policy_node import add_arguments  # no torch: numpy, pyzmq only

    add_arguments(p, backend=False)


def _run_deploy(args: argparse.Namespace) -> int:
    from runtime.policy_node import main_from_args

    args.backend = "onnx"
    return main_from_args(args)


def _add_launch(p: argparse.ArgumentParser) -> None:
    from runtime.launch import add_arguments  # yaml and streams only

    add_arguments(p)


def _run_launch(args: argparse.Namespace) -> int:
    from runtime.launch import main_from_args

    return main_from_args(args)


def _add_view(p: argparse.ArgumentParser) -> None:
    from viz.viewer import add_arguments  # Open3D is imported only when it draws

    add_arguments(p)


def _run_view(args: argparse.Namespace) -> int:
    from viz.viewer import main_from_args

    return main_from_args(args)


def _add_demo(p: argparse.ArgumentParser) -> None:
    from runtime.demo import add_arguments  # no torch until an export is needed

    add_arguments(p)


def _run_demo(args: argparse.Namespace) -> int:
    from runtime.demo import main_from_args

    return main_from_args(args)


def _add_eval(p: argparse.ArgumentParser) -> None:
    from policies.diffusion.evaluate import add_arguments  # argparse only

    add_arguments(p)


def _run_eval(args: argparse.Namespace) -> int:
    from policies.diffusion.evaluate import main_from_args

    return main_from_args(args)


def _add_replay(p: argparse.ArgumentParser) -> None:
    from streams.replay import add_arguments

    add_arguments(p)


def _run_replay(args: argparse.Namespace) -> int:
    from streams.replay import main_from_args

    return main_from_args(args)


def _add_distill(p: argparse.ArgumentParser) -> None:
    from world.cli import add_distill_arguments  # argparse only

    add_distill_arguments(p)


def _run_distill(args: argparse.Namespace) -> int:
    from world.cli import distill_main

    return distill_main(args)


def _add_drive(p: argparse.ArgumentParser) -> None:
    from viz.drive import add_arguments  # streams only

    add_arguments(p)


def _run_drive(args: argparse.Namespace) -> int:
    from viz.drive import main_from_args

    return main_from_args(args)


def _add_bench(p: argparse.ArgumentParser) -> None:
    from runtime.bench import add_arguments

    add_arguments(p)


def _run_bench(args: argparse.Namespace) -> int:
    from runtime.bench import main_from_args

    return main_from_args(args)


SUBCOMMANDS = (
    Subcommand(
        "collect",
        "collect expert demonstrations into a dataset",
        _add_collect,
        _run_collect,
    ),
    Subcommand("train", "train a diffusion policy, or the world generator", _add_train, _run_train),
    Subcommand(
        "distill",
        "distil the world generator into a few-step student (DMD)",
        _add_distill,
        _run_distill,
    ),
    Subcommand("eval", "evaluate a checkpoint in simulation", _add_eval, _run_eval),
    Subcommand(
        "calibrate-rti",
        "choose the RTI warm-start step K' for a checkpoint; store it with the way the "
        "candidates entered and denoised the chain",
        _add_calibrate,
        _run_calibrate,
    ),
    Subcommand("export", "export a checkpoint to ONNX", _add_export, _run_export),
    Subcommand(
        "deploy",
        "run an exported policy as the policy node, without torch",
        _add_deploy,
        _run_deploy,
    ),
    Subcommand("launch", "run a launch graph", _add_launch, _run_launch),
    Subcommand("replay", "republish an MCAP recording", _add_replay, _run_replay),
    Subcommand("view", "view frames and 4D reconstructions", _add_view, _run_view),
    Subcommand("drive", "drive a world node's camera from the keyboard", _add_drive, _run_drive),
    Subcommand("bench", "run a benchmark and record its figures", _add_bench, _run_bench),
    Subcommand("demo", "run a demo end to end", _add_demo, _run_demo),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warmloop",
        description="Real-time runtime for warm-started diffusion policies and 4D world models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in SUBCOMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(subcommand=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command: Subcommand | None = getattr(args, "subcommand", None)
    if command is None:
        parser.print_help()
        return EXIT_USAGE
    if command.run is None:
        sys.stderr.write(f"warmloop {command.name}: not built yet; {command.pending} builds it\n")
        return EXIT_USAGE
    return command.run(args)


if __name__ == "__main__":
    sys.exit(main())
