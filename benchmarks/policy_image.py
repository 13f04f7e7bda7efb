"""`warmloop bench policy-image`: image-observation policies, success against latency.

The `*-image` checkpoints see the task through cameras (96×96 RGB, the centre 84×84 at
inference: the top one, and the wrist one for the pick-and-place tasks) and their own
proprioception, nothing else of the state (policies/diffusion/vision.py). Each is
evaluated closed-loop on the reporting seeds (100,000 onwards) under DDPM-100 and
DDIM-10, executing Ta actions per prediction, and under RTI as calibrated, one action
per prediction; success from 8 environments in lockstep with batched predictions,
latency at batch 1 in a few more episodes (seeds 300,000 onwards), encoder included.
Beside them: the low-dim checkpoint's rows from the last `warmloop bench policy` (the
same seeds and samplers, on the full state) and the scripted expert's success from
`warmloop bench sim`.

Apart from `bench policy` so that the image rows, whose checkpoints train for an hour
or more each, can be re-run without the low-dim hours; its keys carry `_image_`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import BenchResult, project_root
from policies import seeds
from policies.diffusion.checkpoint import Checkpoint, load
from policies.diffusion.evaluate import EvalResult, evaluate
from policies.diffusion.policy import DiffusionPolicy
from training.threads import INFERENCE, set_threads

TASKS = ("pickplace", "pusht", "panda-pickplace", "panda-pusht")
NUM_ENVS = 8
LATENCY_EPISODES = {"pickplace": 5, "pusht": 2, "panda-pickplace": 5, "panda-pusht": 2}
# (label, sampler, actions executed per prediction; None: the checkpoint's Ta)
VARIANTS = (("ddpm100", "ddpm", None), ("ddim10", "ddim", None), ("rti", "rti", 1))
# size -> (scored episodes per variant, latency episodes (None: LATENCY_EPISODES), timings)
SIZES = {"full": (100, None, 200), "quick": (10, 1, 50), "smoke": (1, 1, 3)}


def checkpoint_name(task: str) -> str:
    return f"{task}-image"


def _evaluate(checkpoint: Checkpoint, episodes: int, latency_episodes: int) -> dict:
    results = {}
    for label, sampler, executed in VARIANTS:
        executed = executed or checkpoint.config.action_horizon
        policy = DiffusionPolicy(checkpoint, sampler=sampler, ddim_steps=10, executed=executed)
        task = checkpoint.config.task
        batched = evaluate(policy, task, episodes, executed, progress=False, num_envs=NUM_ENVS)
        policy.reset()
        single = evaluate(
            policy, task, latency_episodes, executed, seed=seeds.LATENCY, progress=False
        )
        results[label] = replace(
            batched,
            latency_p50_ms=single.latency_p50_ms,
            latency_p99_ms=single.latency_p99_ms,
            cold_start_ms=single.cold_start_ms,
            mean_batch=1.0,
        )
    return results


def component_times(checkpoint: Checkpoint, repeats: int) -> dict[str, float]:
    """Median ms at batch 1: the encoder on one (To) window of frames; one U-Net call."""
    from policies.images import render_frames
    from sim.envs import make_env

    policy = DiffusionPolicy(checkpoint, sampler="rti")
    config = policy.config
    env = make_env(config.task)
    observation, _ = env.reset(seed=seeds.LATENCY)
    frames = render_frames(env, config.cameras, config.image_size)
    env.close()
    state = np.stack([observation[list(config.state_dims)]] * config.obs_horizon)[None]
    images = {c: np.stack([f] * config.obs_horizon)[None] for c, f in frames.items()}
    cond = policy.condition(state, (0,), images)
    sample = torch.zeros(1, config.pred_horizon, config.action_dim)
    step = torch.zeros(1, dtype=torch.long)
    timings: dict[str, list[float]] = {"encoder": [], "unet": []}
    with torch.no_grad():
        for _ in range(repeats):
            for name, run in (
                ("encoder", lambda: policy.condition(state, (0,), images)),
                ("unet", lambda: policy.network(sample, step, cond)),
            ):
                began = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - began)
    return {name: float(np.median(values) * 1e3) for name, values in timings.items()}


def run(size: str, checkpoints: Path) -> BenchResult:
    episodes, latency_episodes, repeats = SIZES[size]
    set_threads(None, INFERENCE)  # eval's and the policy node's one thread
    results, components, configs = {}, {}, {}
    missing = []
    # A smoke run walks the code path once: every task takes the same one.
    for task in TASKS[:1] if size == "smoke" else TASKS:
        directory = checkpoints / checkpoint_name(task)
        if not (directory / "config.json").exists():
            missing.append(checkpoint_name(task))
            continue
        checkpoint = load(directory)
        configs[task] = checkpoint.config
        timed = latency_episodes or LATENCY_EPISODES[task]
        results[task] = _evaluate(checkpoint, episodes, timed)
        components[task] = component_times(checkpoint, repeats)
        onnx = fused_against_separate(directory, repeats)
        components[task].update({f"onnx_{name}": ms for name, ms in onnx.items()})
    root = project_root()
    result = _result(
        results, components, configs, _recorded(root, "sim"), _recorded(root, "policy")
    )
    if missing:
        result.notes.append(f"Not shipped: {', '.join(missing)}; no rows (their keys are null).")
    return result


def _recorded(root: Path, name: str) -> dict:
    path = root / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _result(results, components, configs, sim: dict, lowdim: dict) -> BenchResult:
    figures: dict = {}
    notes = []
    table = [
        [
            "task",
            "observation",
            "sampler",
            "actions/prediction",
            "success [95% interval]",
            "p50 / p99 ms",
        ]
    ]
    for task in TASKS:
        variants = results.get(task, {})
        for label, _, _ in VARIANTS:
            r = variants.get(label)
            for field in ("success_rate", "success_low", "success_high"):
                name = field.replace("_rate", "")
                figures[f"{name}_{label}_image_{task}"] = getattr(r, field) if r else None
            figures[f"latency_p50_ms_{label}_image_{task}"] = r.latency_p50_ms if r else None
            figures[f"latency_p99_ms_{label}_image_{task}"] = r.latency_p99_ms if r else None
            if r:
                table.append(_row(task, "image", label, r))
            if r and lowdim.get(f"success_{label}_{task}") is not None:
                table.append(_lowdim_row(task, label, lowdim))
        times = components.get(task, {})
        figures[f"encoder_ms_image_{task}"] = times.get("encoder")
        figures[f"unet_ms_per_call_image_{task}"] = times.get("unet")
        figures[f"onnx_rti_ms_separate_image_{task}"] = times.get("onnx_separate")
        figures[f"onnx_rti_ms_fused_image_{task}"] = times.get("onnx_fused")
        if variants:
            config = configs[task]
            figures[f"rti_k_prime_image_{task}"] = config.rti_k_prime
            notes.append(_targets(task, variants, times, sim.get(f"expert_success_{task}")))
            notes.append(
                f"{task} on onnxruntime (one thread, batch 1), one warm prediction: "
                f"encoder.onnx then rti_update.onnx {times['onnx_separate']:.2f} ms, one "
                f"fused graph of both {times['onnx_fused']:.2f} ms."
            )
            notes.append(
                f"{task}: cameras {list(config.cameras)} at {config.image_size} px (crop "
                f"{config.crop_size}), backbone {config.backbone}, {config.image_features} "
                f"features per camera, state dims {list(config.state_dims)}, "
                f"K' = {config.rti_k_prime} ({config.rti_mode}, {config.rti_sampler})."
            )
    if not results:
        notes.append("No image checkpoint evaluated: no rows (keys are null).")
    notes.append(
        "Low-dim rows: the same task's state-vector checkpoint, copied from "
        "benchmarks/results/policy.json (its own run, the same seeds and samplers)."
    )
    return BenchResult(figures=figures, table=table, notes=notes)


def _row(task: str, observation: str, label: str, r: EvalResult) -> list[str]:
    return [
        task,
        observation,
        label,
        str(r.actions_per_prediction),
        f"{r.success_rate:.2f} [{r.success_low:.2f}, {r.success_high:.2f}]",
        f"{r.latency_p50_ms:.1f} / {r.latency_p99_ms:.1f}",
    ]


def _lowdim_row(task: str, label: str, lowdim: dict) -> list[str]:
    suffix = "" if task == "pickplace" else f"_{task}"
    latency = lowdim.get(f"latency_p50_ms_{label}{suffix}")
    return [
        task,
        "state (bench policy)",
        label,
        "",
        f"{lowdim[f'success_{label}_{task}']:.2f} [{lowdim[f'success_low_{label}_{task}']:.2f}, "
        f"{lowdim[f'success_high_{label}_{task}']:.2f}]",
        f"{latency:.1f}" if latency is not None else "",
    ]


def _targets(task: str, variants: dict, times: dict, expert: float | None) -> str:
    rti, ddpm, ddim = (variants[k] for k in ("rti", "ddpm100", "ddim10"))
    gap = round(ddpm.success_rate - rti.success_rate, 9)
    text = (
        f"{task} from images: RTI within 3 points of DDPM-100: {-gap:+.2f} "
        f"({'met' if gap <= 0.03 else 'NOT met'}); RTI latency (encoder included) "
        f"{ddpm.latency_p50_ms / rti.latency_p50_ms:.1f}x below DDPM-100 (target 20x) and "
        f"{ddim.latency_p50_ms / rti.latency_p50_ms:.1f}x below DDIM-10 (target 3x); "
        f"encoder {times.get('encoder', float('nan')):.2f} ms, U-Net "
        f"{times.get('unet', float('nan')):.2f} ms per call, the encoder's share of an RTI "
        f"prediction {times.get('encoder', float('nan')) / rti.latency_p50_ms:.0%}"
    )
    if expert:
        met = ddpm.success_rate >= 0.9 * expert
        text += (
            f"; DDPM-100 {ddpm.success_rate:.2f} against the expert's {expert:.2f} (target "
            f">= 90% of it: {'met' if met else 'NOT met'})"
        )
    return text + "."


def fused_against_separate(checkpoint_dir: Path, repeats: int) -> dict[str, float]:
    """Median ms of one warm prediction at batch 1 on onnxruntime (one thread): the
    shipped encoder.onnx then rti_update.onnx, against one graph of both, joined by
    onnx.compose on `cond` (the alternative, timed here rather than shipped)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from policies.deploy.export import export
    from policies.deploy.runtime import OnnxPolicy

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        export(checkpoint_dir, out)
        policy = OnnxPolicy(out)
        m = policy.manifest
        fused_model = onnx.compose.merge_models(
            onnx.load(str(out / "encoder.onnx")),
            onnx.load(str(out / "rti_update.onnx")),
            io_map=[("cond", "cond")],
            prefix1="encoder_",
            prefix2="update_",
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        fused = ort.InferenceSession(
            fused_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        state = np.zeros((1, m.obs_horizon, m.obs_dim), np.float32)
        images = {
            f"image_{c}": np.zeros((1, m.obs_horizon, m.image_size, m.image_size, 3), np.uint8)
            for c in m.camera_names
        }
        shifted = np.zeros((1, m.pred_horizon, m.action_dim), np.float32)
        noise = np.zeros((m.noise_draws, *shifted.shape), np.float32) if m.noise_draws else None
        feeds = {"encoder_state": state, "update_shifted": shifted}
        feeds.update({f"encoder_{name}": f for name, f in images.items()})
        if noise is not None:
            feeds["update_noise"] = noise

        def separate() -> None:
            cond = policy.encoder.run({"state": state, **images})
            policy.rti_update(shifted, cond, noise)

        def joined() -> None:
            fused.run(None, feeds)

        timings: dict[str, list[float]] = {"separate": [], "fused": []}
        for _ in range(repeats):
            for name, run_once in (("separate", separate), ("fused", joined)):
                began = time.perf_counter()
                run_once()
                timings[name].append(time.perf_counter() - began)
    return {name: float(np.median(values) * 1e3) for name, values in timings.items()}
