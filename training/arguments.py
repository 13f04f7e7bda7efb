"""The command-line flags every `warmloop train TASK` shares (argparse only, no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    data: str,
    out: str,
    steps: int,
    batch_size: int,
    down_dims: tuple[int, ...],
    lr: float | None,
    lr_help: str = "peak learning rate",
) -> None:
    parser.add_argument("--data", type=Path, help=f"dataset directory (default {data})")
    parser.add_argument("--out", type=Path, help=f"checkpoint directory (default {out})")
    parser.add_argument("--steps", type=int, default=steps, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument(
        "--down-dims", type=int, nargs="+", default=list(down_dims), help="U-Net widths"
    )
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch")
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: every core this process may use)"
    )
