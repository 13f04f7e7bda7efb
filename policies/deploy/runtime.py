"""The torch-free policy runtime: numpy and onnxruntime, nothing else.

`OnnxPolicy` implements policies.interface.Policy like the torch `DiffusionPolicy`:
the first call of an episode samples fully (the per-step network graph, driven by the
same numpy sampler code torch uses), later calls run the unrolled RTI graph once.

Under inference delay, `inpaint="replace"` freezes the first `frozen` rows of every
warm prediction to the previous chunk's plan (prefix replacement, policies/diffusion/
inpainting.py): DDIM and RTI both run step by step on the network graph then, since the
unrolled graph has no place to write the prefix. RTC's guidance needs a
vector-Jacobian product through the network: torch only.

Execution providers: TensorRT → CUDA → CPU, keeping only those this onnxruntime has
and, for the GPU ones, only when a GPU is visible. `providers` reports what the
session actually got after onnxruntime's own fallbacks, never what was asked for.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from policies.deploy.manifest import (
    ExportError,
    GraphEntry,
    Manifest,
    read_manifest,
    verify_graph_file,
)
from policies.diffusion.data import Normalizer
from policies.diffusion.inpainting import Inpainting
from policies.diffusion.sampler import (
    RTIState,
    rti_network_calls,
    rti_update,
    sample_ddim,
    sample_ddpm,
    shift_chunk,
)
from policies.diffusion.scheduler import NoiseSchedule
from policies.images import check_images

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
GPU_PROVIDERS = frozenset(PREFERRED_PROVIDERS[:2])
SAMPLERS = ("rti", "ddpm", "ddim")
ONNX_INPAINT_MODES = ("none", "replace")  # "guide" (RTC) needs autograd: torch only


def gpu_visible() -> bool:
    if Path("/dev/nvidia0").exists():
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    result = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and "GPU" in result.stdout


# Short names for --providers.
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def parse_providers(text: str) -> list[str] | None:
    """`cuda,cpu` or onnxruntime's names -> a provider list; "" -> None (the default)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [PROVIDER_ALIASES.get(name.lower(), name) for name in names] or None


def unusable_reason(provider: str, available: set[str], gpu: bool) -> str | None:
    """Why `provider` cannot run here, or None when it can."""
    if provider not in available:
        build = "onnxruntime-gpu" if GPU_PROVIDERS & available else "onnxruntime (CPU build)"
        return f"not in this onnxruntime build ({build} has {sorted(available)})"
    if provider in GPU_PROVIDERS and not gpu:
        return "in this build, but no GPU is visible (no /dev/nvidia0, nvidia-smi lists none)"
    return None


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """Providers to ask for, in order, from those usable on this machine.

    Asked-for providers that cannot run are dropped with a warning that says why (not in
    this build, or no GPU visible); when none is left the error lists each reason. From
    the default list, GPU providers are dropped quietly on a machine without a GPU.
    """
    available = set(ort.get_available_providers())
    gpu = gpu_visible()
    reasons = {p: unusable_reason(p, available, gpu) for p in requested or PREFERRED_PROVIDERS}
    chosen = [p for p, reason in reasons.items() if reason is None]
    if not chosen:
        why = "; ".join(f"{p}: {reason}" for p, reason in reasons.items())
        raise ExportError(f"none of the providers asked for is usable here ({why})")
    if requested:
        for provider, reason in reasons.items():
            if reason is not None:
                log.warning("%s skipped, %s; running on %s", provider, reason, chosen[0])
    return chosen


class Graph:
    """One onnxruntime session, checked against its manifest entry."""

    def __init__(
        self, directory: Path, entry: GraphEntry, providers: list[str], threads: int | None
    ):
        path = verify_graph_file(directory, entry)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # our own log line says which providers we got
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise ExportError(f"{path}: onnxruntime cannot load it ({exc})") from None
        _check_signature(path, self.session, entry)
        self.providers = self.session.get_providers()
        self.output = entry.outputs and next(iter(entry.outputs))
        self.on_gpu = self.providers[0] in GPU_PROVIDERS

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if not self.on_gpu:
            return self.session.run([self.output], feeds)[0]
        # IO binding: inputs copied to the device once, the output kept there until
        # the single copy back, instead of onnxruntime's per-call staging.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(self.output, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _check_signature(path: Path, session: ort.InferenceSession, entry: GraphEntry) -> None:
    for kind, declared, actual in (
        ("input", entry.inputs, session.get_inputs()),
        ("output", entry.outputs, session.get_outputs()),
    ):
        got = {arg.name: list(arg.shape) for arg in actual}
        if set(got) != set(declared):
            raise ExportError(
                f"{path}: {kind}s {sorted(got)} disagree with manifest.json {sorted(declared)}"
            )
        for name, shape in declared.items():
            graph_shape = got[name]
            same = len(graph_shape) == len(shape) and all(
                isinstance(m, str) == (not isinstance(g, int)) and (isinstance(m, str) or m == g)
                for m, g in zip(shape, graph_shape, strict=True)
            )
            if not same:
                raise ExportError(
                    f"{path}: {kind} {name} has shape {graph_shape}, manifest.json says {shape}"
                )


class OnnxPolicy:
    """policies.interface.Policy on onnxruntime. See the module docstring.

    An image policy's export adds encoder.onnx: raw frames and the normalised state in,
    the condition out, once per prediction.

    threads: onnxruntime's intra-op threads. One by default: batch-1 graphs are too
    small to split, and on 2 cores a second thread made the RTI update slower
    (2.8 ms against 4.1 ms, AMD EPYC). None lets onnxruntime choose.
    """

    def __init__(
        self,
        directory: Path | str,
        sampler: str = "rti",
        executed: int = 1,
        seed: int = 0,
        ddim_steps: int = 10,
        providers: Sequence[str] | None = None,
        threads: int | None = 1,
        inpaint: str = "none",
        frozen: int = 0,
    ):
        directory = Path(directory)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.manifest = m = read_manifest(directory)
        if not 1 <= executed <= m.pred_horizon:
            raise ValueError(f"executed must be in 1..{m.pred_horizon}, got {executed}")
        _check_inpainting(inpaint, frozen, sampler, m.pred_horizon - executed)
        self.inpaint, self.frozen = inpaint, frozen
        chosen = choose_providers(providers)
        self.network = Graph(directory, m.graphs["network"], chosen, threads)
        self.rti_graph = (
            Graph(directory, m.graphs["rti_update"], chosen, threads)
            if "rti_update" in m.graphs
            else None
        )
        # Image policies: the encoder runs once per prediction, every U-Net call after it
        # (all K'+1 of an RTI update) reuses its condition.
        self.encoder = Graph(directory, m.graphs["encoder"], chosen, threads) if m.cameras else None
        self.encoder_calls = 0
        if sampler == "rti" and self.rti_graph is None:
            raise ExportError(f"{directory}: sampler 'rti' needs rti_update.onnx")
        self.providers = self.network.providers
        self.threads = threads
        if chosen[0] != self.providers[0]:
            log.warning("asked for %s, onnxruntime gave %s", chosen, self.providers)
        self.sampler, self.executed, self.ddim_steps = sampler, executed, ddim_steps
        self.obs_horizon, self.pred_horizon = m.obs_horizon, m.pred_horizon
        self.obs_dim = m.obs_dim
        self.obs_normalizer = Normalizer.from_dict(m.obs_normalizer)
        self.action_normalizer = Normalizer.from_dict(m.action_normalizer)
        self.schedule = NoiseSchedule(m.train_steps, m.clip_sample)
        self.rng = np.random.default_rng(seed)
        self.rti = RTIState(m.discrete_dims, m.discrete_factor if m.rti_clip else None)
        self.rti_calls = rti_network_calls(m.k_prime, m.rti_sampler, m.rti_steps)
        self.network_calls = 0

    @property
    def k_prime(self) -> int:
        return self.manifest.k_prime

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras `infer` needs frames of; () for a policy on the state alone."""
        return self.manifest.camera_names

    @property
    def state_dims(self) -> tuple[int, ...]:
        return self.manifest.state_dims

    @property
    def image_size(self) -> int:
        return self.manifest.image_size

    def reset(self) -> None:
        self.rti.reset()

    def infer(
        self, observations: np.ndarray, images: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        chunk = self.predict_normalized(observations, images)
        actions = self.action_normalizer.unnormalize(chunk[0])
        for d in self.manifest.discrete_dims:
            actions[:, d] = np.where(actions[:, d] > 0, 1.0, -1.0)
        return actions

    def condition(
        self, observations: np.ndarray, images: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """(To, D) observations (and an image policy's frames, {camera: (To, H, W, 3)
        uint8}) -> the (1, G) condition, after checks."""
        m = self.manifest
        expected = (m.obs_horizon, m.obs_dim)
        observations = np.asarray(observations, np.float32)
        if observations.shape != expected:
            raise ValueError(f"observations must have shape {expected}, got {observations.shape}")
        if not np.isfinite(observations).all():
            raise ValueError("observations contain NaN or infinity")
        with np.errstate(over="ignore", invalid="ignore"):
            normalized = self.obs_normalizer.normalize(observations)
        if not np.isfinite(normalized).all():  # e.g. 3.4e38: finite, but not once scaled
            raise ValueError("observations normalise to infinity: far outside the trained range")
        if self.encoder is None:
            if images:
                raise ValueError(f"this policy sees no cameras; got images of {list(images)}")
            return normalized.reshape(1, -1)
        frames = check_images(images, self.cameras, (m.obs_horizon,), self.image_size)
        feeds = {"state": normalized[None]}
        feeds.update({f"image_{c}": f[None] for c, f in frames.items()})
        self.encoder_calls += 1
        return self.encoder.run(feeds)

    @property
    def warm_starts(self) -> bool:
        """Whether predictions after an episode's first start from the previous chunk."""
        return self.sampler == "rti" or self.inpaint != "none"

    def predict_normalized(
        self, observations: np.ndarray, images: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        cond = self.condition(observations, images)
        shape = (1, self.pred_horizon, self.manifest.action_dim)
        if self.inpaint != "none" and self.rti.warm:
            chunk = self._inpainted(cond, shape)
        elif self.sampler == "rti" and self.rti.anchor_due(self.manifest.rti_anchor_every):
            chunk = self._ddim(cond, shape, self.manifest.rti_anchor_steps)  # re-anchoring
        elif self.sampler == "rti" and self.rti.warm:
            chunk = self.rti_update(shift_chunk(self.rti.guess, self.executed), cond)
        elif self.sampler == "ddim":
            chunk = self._ddim(cond, shape, self.ddim_steps)
        else:
            chunk = sample_ddpm(
                self.eps_fn(cond), self.schedule, self.noise(shape), lambda: self.noise(shape)
            )
        if self.warm_starts:
            self.rti.store(chunk)
        return chunk

    def _ddim(self, cond: np.ndarray, shape: tuple[int, ...], steps: int) -> np.ndarray:
        timesteps = self.schedule.ddim_timesteps(steps)
        return sample_ddim(self.eps_fn(cond), self.schedule, self.noise(shape), timesteps)

    def _inpainted(self, cond: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A warm prediction whose first `frozen` rows keep the previous chunk's plan."""
        m, noise = self.manifest, (lambda: self.noise(shape))
        inpainting = Inpainting(
            known=shift_chunk(self.rti.guess, self.executed),
            frozen=self.frozen,
            noised=not (self.sampler == "rti" and m.rti_mode == "state"),
        )
        if self.sampler == "ddim":
            timesteps = self.schedule.ddim_timesteps(self.ddim_steps)
            return sample_ddim(
                self.eps_fn(cond), self.schedule, noise(), timesteps, noise=noise,
                inpainting=inpainting,
            )  # fmt: skip
        return rti_update(
            self.eps_fn(cond), self.schedule, self.rti.guess, self.executed, m.k_prime,
            noise, m.rti_mode, m.rti_sampler, m.rti_steps, inpainting,
        )  # fmt: skip

    def rti_update(self, shifted: np.ndarray, cond: np.ndarray, noise=None) -> np.ndarray:
        """One unrolled-graph RTI update from the shifted guess; noise is drawn if not given."""
        feeds = {"shifted": shifted.astype(np.float32, copy=False), "cond": cond}
        if self.manifest.noise_draws:
            if noise is None:
                noise = self.noise((self.manifest.noise_draws, *shifted.shape))
            feeds["noise"] = noise
        self.network_calls += self.rti_calls
        return self.rti_graph.run(feeds)

    def eps_fn(self, cond: np.ndarray):
        steps = np.empty(cond.shape[0], np.int64)

        def eps(x: np.ndarray, t: int) -> np.ndarray:
            self.network_calls += 1
            steps.fill(t)
            return self.network.run(
                {"sample": x.astype(np.float32, copy=False), "step": steps, "cond": cond}
            )

        return eps

    def noise(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)


def _check_inpainting(inpaint: str, frozen: int, sampler: str, most: int) -> None:
    if inpaint not in ONNX_INPAINT_MODES:
        raise ValueError(
            f"inpaint must be one of {ONNX_INPAINT_MODES} with onnxruntime, got {inpaint!r}"
            + (" (RTC guidance needs autograd: torch only)" if inpaint == "guide" else "")
        )
    if inpaint != "none" and sampler == "ddpm":
        raise ValueError("inpainting needs the ddim or rti sampler")
    if not 0 <= frozen <= most:
        raise ValueError(
            f"frozen must be in 0..{most} (the horizon less the executed actions), got {frozen}"
        )


def device_of(policy: OnnxPolicy) -> str:
    """Where the graphs run: the GPU's device id, or the CPU with its thread count."""
    if policy.network.on_gpu:
        options = policy.network.session.get_provider_options().get(policy.providers[0], {})
        return f"GPU {options.get('device_id', 0)}"
    return f"CPU, {policy.threads or 'onnxruntime-chosen'} intra-op thread(s)"


def describe(policy: OnnxPolicy) -> str:
    m: Manifest = policy.manifest
    return (
        f"onnx policy on {policy.providers[0]} ({device_of(policy)}; session providers "
        f"{policy.providers}), sampler {policy.sampler}, K'={m.k_prime} "
        f"({m.rti_sampler}, {policy.rti_calls} calls), "
        f"To={m.obs_horizon}, Tp={m.pred_horizon}, action_dim={m.action_dim}"
    )
