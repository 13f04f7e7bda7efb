"""Benchmarks render headless without MUJOCO_GL set by the caller, as `warmloop bench` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sim_benchmark_module_leaves_the_gl_choice_to_sim():
    # benchmarks/sim.py once imported mujoco before `sim`, so MuJoCo chose no GL backend
    # and every render failed outside the test suite (whose conftest sets MUJOCO_GL).
    code = (
        "import benchmarks.sim\n"
        "from sim.envs import make_env\n"
        "env = make_env('pickplace'); env.reset(seed=0)\n"
        "print(env.unwrapped.render_camera(width=32, height=32, depth=False).rgb.shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.pop("DISPLAY", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(32, 32, 3)" in done.stdout
