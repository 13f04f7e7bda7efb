"""A second runtime for exported policies, written from docs/deployment.md alone.

It reads manifest.json and the two graphs, and imports numpy and onnxruntime only:
nothing of warmloop. It follows the numbered steps of "A runtime in another language",
so that the test beside it proves the export is enough to write one. The arithmetic is
float32 arrays with float64 scalar coefficients, in the order the steps give it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort


class ReferenceRuntime:
    def __init__(self, directory: Path, draw):
        """`draw(shape)` returns standard normal float32 noise, in the order asked."""
        self.m = json.loads((Path(directory) / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.network, self.update = (
            ort.InferenceSession(str(Path(directory) / self.m["graphs"][name]["file"]), options)
            for name in ("network", "rti_update")
        )
        self.draw = draw
        self.guess: np.ndarray | None = None
        self.kept = 0  # guesses kept this episode

    def reset(self) -> None:  # step 7: a new episode starts cold
        self.guess, self.kept = None, 0

    def act(self, window: np.ndarray, executed: int) -> np.ndarray:
        """Observations (To, D) -> the chunk of actions (Tp, A) to execute from."""
        m = self.m
        cond = self._normalize(window, m["obs_normalizer"]).reshape(1, -1)  # step 1
        shape = (1, m["pred_horizon"], m["action_dim"])
        every = m.get("rti_anchor_every", 0)
        if self.guess is None:  # step 2: the first prediction denoises the whole chain
            x = self.draw(shape)
            for t in m["first_timesteps"]:
                x = self._ddpm_step(x, self._eps(x, t, cond), t)
        elif every and self.kept % every == 0:  # re-anchoring: DDIM from noise
            x, count = self.draw(shape), m["rti_anchor_steps"]
            steps = [t * (m["train_steps"] // count) for t in range(count)][::-1]
            for t, after in zip(steps, [*steps[1:], -1], strict=True):
                x = self._ddim_step(x, self._eps(x, t, cond), t, after)
        else:  # steps 3-4: shift the guess by the actions executed, one graph call
            index = np.minimum(np.arange(shape[1]) + executed, shape[1] - 1)
            feeds = {"shifted": self.guess[:, index], "cond": cond}
            if m["noise_draws"]:
                feeds["noise"] = self.draw((m["noise_draws"], *shape))
            x = self.update.run(None, feeds)[0]
        self.guess = self._snap_guess(x) if m["rti_clip"] else x  # step 5
        self.kept += 1
        return self._actions(x[0])  # step 6

    def _eps(self, x: np.ndarray, t: int, cond: np.ndarray) -> np.ndarray:
        return self.network.run(None, {"sample": x, "step": np.full(1, t), "cond": cond})[0]

    def _ddim_step(self, x: np.ndarray, eps: np.ndarray, t: int, after: int) -> np.ndarray:
        alpha_bars, clip = self.m["alphas_cumprod"], self.m["clip_sample"]
        ab, ab_after = alpha_bars[t], (alpha_bars[after] if after >= 0 else 1.0)
        x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
        if clip:
            x0 = x0.clip(-clip, clip)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
        return math.sqrt(ab_after) * x0 + math.sqrt(max(1.0 - ab_after, 0.0)) * eps

    def _ddpm_step(self, x: np.ndarray, eps: np.ndarray, t: int) -> np.ndarray:
        betas, alpha_bars, clip = self.m["betas"], self.m["alphas_cumprod"], self.m["clip_sample"]
        ab, ab_prev, beta = alpha_bars[t], (alpha_bars[t - 1] if t > 0 else 1.0), betas[t]
        x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
        if clip:
            x0 = x0.clip(-clip, clip)
        coef_x0 = beta * math.sqrt(ab_prev) / (1.0 - ab)
        coef_xt = (1.0 - ab_prev) * math.sqrt(1.0 - beta) / (1.0 - ab)
        mean = coef_x0 * x0 + coef_xt * x
        if t == 0:
            return mean
        variance = beta * (1.0 - ab_prev) / (1.0 - ab)
        return mean + math.sqrt(variance) * self.draw(x.shape)

    def _snap_guess(self, x: np.ndarray) -> np.ndarray:
        level, out = 1.0 / self.m["discrete_factor"], x.copy()
        for d in self.m["discrete_dims"]:
            out[..., d] = (out[..., d] > 0) * (2 * level) - level
        return out

    def _actions(self, chunk: np.ndarray) -> np.ndarray:
        n = self.m["action_normalizer"]
        low, span, gain = self._span(n)
        unit = np.asarray(chunk, np.float64) / gain
        actions = ((unit + 1.0) / 2.0 * span + low).astype(np.float32)
        for d in self.m["discrete_dims"]:
            actions[:, d] = np.where(actions[:, d] > 0, 1.0, -1.0)
        return actions

    def _normalize(self, x: np.ndarray, n: dict) -> np.ndarray:
        low, span, gain = self._span(n)
        return ((2.0 * (x - low) / span - 1.0) * gain).astype(np.float32)

    @staticmethod
    def _span(n: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        low, high = np.asarray(n["low"], np.float64), np.asarray(n["high"], np.float64)
        gain = np.ones_like(low)
        gain[list(n["discrete_dims"])] = 1.0 / n["discrete_factor"]
        return low, np.where(high - low > 1e-8, high - low, 1.0), gain
