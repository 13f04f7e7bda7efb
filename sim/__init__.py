"""MuJoCo scenes as gymnasium environments, scripted experts, datasets and the sim node.

Importing `sim` registers `warmloop/PickPlace-v0`, `warmloop/PushT-v0` and
`warmloop/Explore-v0` with gymnasium.
"""

from sim.envs import SCENES, make_env, register_all

register_all()

__all__ = ["SCENES", "make_env", "register_all"]
