"""MuJoCo scenes as gymnasium environments, scripted experts, datasets and the sim node.

Importing `sim` registers `warmloop/PickPlace-v0`, `warmloop/PushT-v0` and
`warmloop/Explore-v0` with gymnasium.
"""

import os

# Headless machines (no X display) render offscreen through EGL unless told otherwise;
# this must happen before MuJoCo is imported, which picks its GL backend on import.
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from sim.envs import SCENES, make_env, register_all

register_all()

__all__ = ["SCENES", "make_env", "register_all"]
