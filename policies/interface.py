"""The policy interface shared by the torch policy and the torch-free ONNX runtime.

It imports neither torch nor onnxruntime, so a robot computer can depend on it alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    obs_dim: int  # D: the length of one observation (state) vector
    obs_horizon: int  # To: how many past observations `infer` takes
    pred_horizon: int  # Tp: how many actions it returns

    def infer(self, observations: np.ndarray) -> np.ndarray:
        """(To, D) observations, oldest first -> (Tp, A) actions in env units.

        Discrete action dimensions come back binarised to ±1. Action i of the result
        belongs to the step of observation To−1 plus (i − (To−1)): see
        policies/diffusion/data.py for the timing diagram.
        """
        ...

    def reset(self) -> None:
        """Forget everything carried between calls (RTI's warm-start guess)."""
        ...
