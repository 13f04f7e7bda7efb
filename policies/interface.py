"""The policy interface shared by the torch policy and the torch-free ONNX runtime.

It imports neither torch nor onnxruntime, so a robot computer can depend on it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    obs_dim: int  # D: the length of one observation (state) vector
    obs_horizon: int  # To: how many past observations `infer` takes
    pred_horizon: int  # Tp: how many actions it returns
    cameras: tuple[str, ...]  # whose frames `infer` needs; () for a policy on the state

    def infer(
        self, observations: np.ndarray, images: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """(To, D) observations, oldest first -> (Tp, A) actions in env units.

        A policy with cameras also takes `images`, {camera: (To, H, W, 3) uint8 RGB}
        frames as the camera gives them (policies/images.py); its D state entries are
        then the robot's proprioception. Discrete action dimensions come back binarised
        to ±1. Action i of the result belongs to the step of observation To−1 plus
        (i − (To−1)): see policies/diffusion/data.py for the timing diagram.
        """
        ...

    def reset(self) -> None:
        """Forget everything carried between calls (RTI's warm-start guess)."""
        ...
