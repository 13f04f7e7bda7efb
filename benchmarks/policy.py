"""`warmloop bench policy`: success against latency for DDPM-100, DDIM-10 and RTI.

Each task's shipped checkpoint is evaluated closed-loop on the same seeds (100,000
onwards) under every sampler: DDPM-100 and DDIM-10 executing Ta = 8 actions per
prediction, RTI as the checkpoint was calibrated (its K', way into the chain and
sampler) executing one action per prediction (RTI mode) and Ta = 8 (chunk mode), and
RTI entering the chain the other way, all else equal: "rti_renoise" re-noises the
guess to level K' (Diffuser-style) where the checkpoint takes it as the state at K'
(the paper's way), "rti_state" the reverse.
Success comes from 8 environments stepped in lockstep with batched predictions;
latency is per prediction at batch 1, torch eager, measured in a few more closed-loop
episodes (seeds 300,000 onwards; RTI's first prediction of each episode, a full chain,
excluded). The sampler overhead is one timed RTI update over its network calls
((K'+1) for the paper's DDPM chain) timed one by one, on the same inputs.

Tune on one range, report on another (policies/seeds.py): DDPM-100 and RTI are also
scored on the fresh seeds (900,000 onwards), which nothing here was chosen on, so an
in-sample figure shows as a gap between the two ranges.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import BenchResult, project_root, save_figure
from benchmarks.load import cpu_hogs
from policies import seeds
from policies.diffusion.checkpoint import Checkpoint, load
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.evaluate import EvalResult, evaluate
from policies.diffusion.policy import DiffusionPolicy
from training.threads import INFERENCE, cores_available, set_threads

# The mocap pusher's tasks; the Franka Panda's are `bench policy-panda`'s (the same code:
# a run of all four took 2 h 45 min on a 2-core CPU, too long to re-run for either half).
TASKS = ("pickplace", "pusht")
LABELS = ("ddpm100", "ddim10", "rti", "rti_chunk", "rti_state", "rti_renoise")
NUM_ENVS = 8
LATENCY_SEED = seeds.LATENCY  # episodes timed at batch 1, apart from the scored ones
# PushT episodes are up to 300 steps; PickPlace's about 30
LATENCY_EPISODES = {"pickplace": 10, "pusht": 3, "panda-pickplace": 10, "panda-pusht": 3}
PLOT = Path("docs") / "img" / "policy_success_latency.png"
# (label, sampler, actions executed per prediction or None for the checkpoint's Ta,
#  RTI warm start or None for the checkpoint's; "other" is the one it does not use)
VARIANTS = (
    ("ddpm100", "ddpm", None, None),
    ("ddim10", "ddim", None, None),
    ("rti", "rti", 1, None),
    ("rti_chunk", "rti", None, None),
    ("rti_{other}", "rti", 1, "other"),
)


def _evaluate_task(checkpoint: Checkpoint, episodes: int, latency_episodes: int) -> dict:
    """Success from `episodes` episodes on NUM_ENVS lockstep environments (batched);
    latency from `latency_episodes` more at batch 1, as one robot would see it."""
    results = {}
    for label, sampler, executed, warm_start in VARIANTS:
        if warm_start == "other":
            warm_start = "renoise" if checkpoint.config.rti_mode == "state" else "state"
            label = label.format(other=warm_start)
        policy = DiffusionPolicy(
            checkpoint,
            sampler=sampler,
            ddim_steps=10,
            executed=executed or 1,
            warm_start=warm_start,
        )
        executed = executed or policy.config.action_horizon
        policy.executed = executed
        task = policy.config.task
        batched = evaluate(policy, task, episodes, executed, progress=False, num_envs=NUM_ENVS)
        policy.reset()
        single = evaluate(
            policy, task, latency_episodes, executed, seed=LATENCY_SEED, progress=False
        )
        results[label] = replace(
            batched,
            latency_p50_ms=single.latency_p50_ms,
            latency_p99_ms=single.latency_p99_ms,
            cold_start_ms=single.cold_start_ms,
            mean_batch=1.0,  # the latencies reported are batch 1
        )
    return results


FRESH_LABELS = ("ddpm100", "rti")


def _evaluate_fresh(checkpoint: Checkpoint, episodes: int) -> dict[str, EvalResult]:
    """DDPM-100 and RTI (as calibrated) on the fresh seeds, batched: success only."""
    results = {}
    for label, sampler, executed, _ in VARIANTS[:3]:
        if label not in FRESH_LABELS:
            continue
        executed = executed or checkpoint.config.action_horizon
        policy = DiffusionPolicy(checkpoint, sampler=sampler, ddim_steps=10, executed=executed)
        results[label] = evaluate(
            policy,
            checkpoint.config.task,
            episodes,
            executed,
            seed=seeds.FRESH,
            progress=False,
            num_envs=NUM_ENVS,
        )
    return results


def sampler_overhead(checkpoint: Path, repeats: int = 200) -> float:
    """Time of one RTI update over its network calls, timed alone, batch 1, same inputs."""
    from policies.diffusion.sampler import rti_network_calls, rti_update

    policy = DiffusionPolicy(checkpoint)
    config, network = policy.config, policy.network
    cond = torch.zeros(1, config.cond_dim)
    guess = torch.zeros(1, config.pred_horizon, config.action_dim)
    step = torch.zeros(1, dtype=torch.long)

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        return network(x, torch.full((1,), t), cond)

    def update() -> None:
        rti_update(
            eps,
            policy.schedule,
            guess,
            1,
            policy.k_prime,
            lambda: torch.randn_like(guess),
            sampler=policy.rti_sampler,
            steps=policy.rti_steps,
        )

    def call() -> None:
        network(guess, step, cond)

    timings = {"update": [], "call": []}
    with torch.no_grad():
        for _ in range(min(20, repeats)):
            update()
        for _ in range(repeats):  # interleaved, so drift hits both alike
            for name, fn in (("update", update), ("call", call)):
                began = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - began)
    calls = rti_network_calls(policy.k_prime, policy.rti_sampler, policy.rti_steps)
    return float(np.median(timings["update"]) / (calls * np.median(timings["call"])))


def _describe_rti(config: DiffusionConfig) -> dict:
    """The checkpoint's calibrated RTI: K', way into the chain, sampler, calls per update."""
    from policies.diffusion.sampler import rti_network_calls

    return {
        "k_prime": config.rti_k_prime,
        "warm_start": config.rti_mode,
        "sampler": config.rti_sampler,
        "calls": rti_network_calls(config.rti_k_prime, config.rti_sampler, config.rti_steps),
    }


# size -> (scored episodes per variant, latency episodes per task (None: the full count),
#          repeats of the sampler-overhead timing)
SIZES = {"full": (100, None, 200), "quick": (10, 2, 200), "smoke": (1, 1, 5)}


def loaded_latency(checkpoint: Checkpoint, episodes: int, threads: int) -> float:
    """RTI p50 (ms) at batch 1 with two CPU hogs on the machine, torch at `threads`."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        policy = DiffusionPolicy(checkpoint, sampler="rti", executed=1)
        with cpu_hogs(2):
            result = evaluate(policy, "pickplace", episodes, 1, seed=LATENCY_SEED, progress=False)
        return result.latency_p50_ms
    finally:
        torch.set_num_threads(previous)


def run(size: str, checkpoints: Path) -> BenchResult:
    result = run_tasks(size, checkpoints, TASKS, PLOT)
    _, latency_episodes, overhead_repeats = SIZES[size]
    overhead = sampler_overhead(checkpoints / "pickplace", overhead_repeats)
    result.figures["sampler_overhead_ratio"] = overhead
    result.notes.append(
        f"Sampler overhead (PickPlace): one RTI update takes {overhead:.2f} of its network "
        "calls timed alone (target <= 1.15).",
    )
    pickplace = load(checkpoints / "pickplace")
    loaded_episodes = latency_episodes or LATENCY_EPISODES["pickplace"]
    loaded = {
        "latency_p50_ms_rti_loaded": loaded_latency(pickplace, loaded_episodes, 1),
        # torch's default: a thread per core, which two hogs leave no core for
        "latency_p50_ms_rti_loaded_all_cores": loaded_latency(
            pickplace, loaded_episodes, cores_available()
        ),
    }
    result.figures.update(loaded)
    result.notes.insert(
        1,
        f"Under load (two CPU hogs beside it), PickPlace RTI p50 at batch 1: "
        f"{loaded['latency_p50_ms_rti_loaded']:.1f} ms with one torch thread (the default "
        f"of eval and the policy node), {loaded['latency_p50_ms_rti_loaded_all_cores']:.1f} "
        "ms with a thread per core (torch's own default).",
    )
    return result


def run_tasks(size: str, checkpoints: Path, tasks: tuple[str, ...], plot: Path) -> BenchResult:
    """Every sampler on each task whose checkpoint is shipped, the fresh-seed rows and the
    plot at `plot` (`bench policy-panda` is this on the Panda's tasks)."""
    episodes, latency_episodes, _ = SIZES[size]
    set_threads(None, INFERENCE)  # what eval and the policy node use: one thread
    results, rti, fresh = {}, {}, {}
    for task in tasks:
        directory = checkpoints / task
        if (directory / "config.json").exists():
            checkpoint = load(directory)  # once: every variant shares its weights
            timed = latency_episodes or LATENCY_EPISODES[task]
            results[task] = _evaluate_task(checkpoint, episodes, timed)
            fresh[task] = _evaluate_fresh(checkpoint, episodes)
            rti[task] = _describe_rti(checkpoint.config)
    experts = _expert_success(project_root(), tasks)
    result = _result(results, rti, episodes, experts, tasks, plot)
    _add_fresh(result, results, fresh)
    result.files[str(plot)] = save_figure(_plot(results))
    return result


def _expert_success(root: Path, tasks: tuple[str, ...]) -> dict[str, float]:
    """The scripted experts' success rates from the last `warmloop bench sim`, if any:
    the training target is DDPM-100 at >= 90% of them."""
    path = root / "benchmarks" / "results" / "sim.json"
    if not path.exists():
        return {}
    figures = json.loads(path.read_text(encoding="utf-8"))
    return {
        task: figures[f"expert_success_{task}"]
        for task in tasks
        if isinstance(figures.get(f"expert_success_{task}"), float)
    }


def _plot(results: dict[str, dict[str, EvalResult]]):
    """One panel per task (a shared latency axis), a marker per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {
        "ddpm100": "s",
        "ddim10": "^",
        "rti": "o",
        "rti_chunk": "D",
        "rti_state": "<",
        "rti_renoise": "v",
    }
    columns = 2 if len(results) > 1 else 1
    rows = max(1, -(-len(results) // columns))
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(5 * columns + 2, 3.2 * rows),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for axis in axes.flat[len(results) :]:
        axis.set_visible(False)
    for axis, (task, variants) in zip(axes.flat, results.items(), strict=False):
        for label, result in variants.items():
            axis.errorbar(
                result.latency_p50_ms,
                result.success_rate,
                yerr=[
                    [result.success_rate - result.success_low],
                    [result.success_high - result.success_rate],
                ],  # Wilson bounds: not centred on the rate
                marker=markers[label],
                color=f"C{LABELS.index(label)}",  # a sampler's colour in every panel
                linestyle="none",
                capsize=3,
                label=label,
            )
        axis.set_title(task, fontsize=9)
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xticks([5, 10, 20, 50, 100, 200, 500, 1000])
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_ylim(0, 1.05)
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("latency per prediction, p50 (ms, log)")
    for axis in axes[:, 0]:
        axis.set_ylabel("success (95% interval)")
    legend = {}  # every sampler once: the panels differ in which warm start they show
    for axis in axes.flat:
        legend.update(zip(*reversed(axis.get_legend_handles_labels()), strict=True))
    figure.legend(legend.values(), legend.keys(), fontsize=8, loc="center right")
    figure.tight_layout(rect=(0, 0, 0.88, 1))  # the legend beside the panels, off the points
    return figure


def _result(
    results,
    rti,
    episodes: int,
    experts: dict[str, float] | None = None,
    tasks: tuple[str, ...] = TASKS,
    plot: Path = PLOT,
) -> BenchResult:
    figures: dict[str, float | None] = {"episodes": episodes}
    for task in tasks:
        variants = results.get(task, {})
        for label in LABELS:
            result = variants.get(label)
            figures[f"success_{label}_{task}"] = result.success_rate if result else None
            figures[f"success_ci95_{label}_{task}"] = result.success_ci95 if result else None
            # Un-suffixed latency keys are PickPlace's (the keys); PushT's carry _pusht.
            suffix = "" if task == "pickplace" else f"_{task}"
            figures[f"latency_p50_ms_{label}{suffix}"] = result.latency_p50_ms if result else None
            figures[f"latency_p99_ms_{label}{suffix}"] = result.latency_p99_ms if result else None
            figures[f"success_low_{label}_{task}"] = result.success_low if result else None
            figures[f"success_high_{label}_{task}"] = result.success_high if result else None
            figures[f"ms_per_action_{label}_{task}"] = (
                result.latency_p50_ms / result.actions_per_prediction if result else None
            )
        rti_result = variants.get("rti")
        # The first prediction of an episode, batch 1: RTI's runs the full DDPM chain.
        figures[f"cold_start_ms_{task}"] = rti_result.cold_start_ms if rti_result else None
        settings = rti.get(task, {})
        for key in ("k_prime", "sampler", "warm_start", "calls"):
            figures[f"rti_{key}_{task}"] = settings.get(key)
    return BenchResult(
        figures=figures,
        table=_table(results),
        notes=_notes(results, rti, experts or {}, tasks, plot),
    )


def _add_fresh(result: BenchResult, results: dict, fresh: dict) -> None:
    """Fresh-seed rows beside the reporting ones: figures, table rows, the first note."""
    lines = []
    for task, variants in fresh.items():
        for label, r in variants.items():
            result.figures[f"success_{label}_{task}_fresh"] = r.success_rate
            result.figures[f"success_low_{label}_{task}_fresh"] = r.success_low
            result.figures[f"success_high_{label}_{task}_fresh"] = r.success_high
            result.table.append(
                [task, f"{label}, fresh seeds", str(r.actions_per_prediction), "", _rate(r), "", ""]
            )
        if set(FRESH_LABELS) <= set(variants):
            report = results[task]["rti"].success_rate - results[task]["ddpm100"].success_rate
            out = variants["rti"].success_rate - variants["ddpm100"].success_rate
            lines.append(f"{task} {report:+.2f} on the reporting seeds, {out:+.2f} on fresh ones")
    if lines:
        result.notes.insert(0, "RTI − DDPM-100 success: " + "; ".join(lines) + ".")
    _add_pooled_gap(result, results, fresh)


def paired_gap(rti: list[EvalResult], ddpm: list[EvalResult], z: float = 1.96) -> tuple:
    """RTI − DDPM-100 success over every seed both ran, with a 95% interval from the
    per-seed differences (mean ± z·sd/√n). Both samplers meet the same start states, so
    pairing takes each seed's own difficulty out of the spread. (gap, low, high, seeds)."""
    outcomes = [
        {record["seed"]: float(record["success"]) for r in runs for record in r.per_episode}
        for runs in (rti, ddpm)
    ]
    shared = sorted(outcomes[0].keys() & outcomes[1].keys())
    if len(shared) < 2:
        return (float("nan"),) * 3 + (len(shared),)
    differences = np.array([outcomes[0][seed] - outcomes[1][seed] for seed in shared])
    gap = float(differences.mean())
    half = z * float(differences.std(ddof=1)) / np.sqrt(len(shared))
    return gap, gap - half, gap + half, len(shared)


def _add_pooled_gap(result: BenchResult, results: dict, fresh: dict) -> None:
    """The target read on both seed ranges at once (neither was tuned on): twice the
    episodes, paired by seed. Reported beside each range's own gap, not instead of it."""
    lines = []
    for task, variants in fresh.items():
        if not set(FRESH_LABELS) <= set(variants):
            continue
        runs = {label: [results[task][label], variants[label]] for label in FRESH_LABELS}
        gap, low, high, n = paired_gap(runs["rti"], runs["ddpm100"])
        for suffix, value in (("", gap), ("_low", low), ("_high", high)):
            result.figures[f"success_gap_rti_ddpm100{suffix}_{task}_pooled"] = value
        met = "met" if round(-gap, 9) <= 0.03 else "NOT met"
        lines.append(f"{task} {gap:+.3f} [{low:+.3f}, {high:+.3f}] over {n} seeds ({met})")
    if lines:
        result.notes.insert(
            1,
            "RTI − DDPM-100 success, both seed ranges pooled and paired by seed (95% "
            "interval of the per-seed differences; target within 3 points): "
            + "; ".join(lines)
            + ".",
        )


def _rate(r: EvalResult) -> str:
    """Success with its Wilson bounds: the interval is not centred on the rate."""
    return f"{r.success_rate:.2f} [{r.success_low:.2f}, {r.success_high:.2f}]"


def _table(results: dict[str, dict[str, EvalResult]]) -> list[list[str]]:
    table = [
        [
            "task",
            "sampler",
            "actions/prediction",
            "calls/prediction",
            "success [95% interval]",
            "p50 / p99 ms",
            "ms per executed action",
        ]
    ]
    for task, variants in results.items():
        for label, r in variants.items():
            table.append(
                [
                    task,
                    label,
                    str(r.actions_per_prediction),
                    f"{r.network_calls_per_prediction:.0f}",
                    _rate(r),
                    f"{r.latency_p50_ms:.1f} / {r.latency_p99_ms:.1f}",
                    f"{r.latency_p50_ms / r.actions_per_prediction:.1f}",
                ]
            )
    return table


def _notes(
    results: dict[str, dict[str, EvalResult]],
    rti: dict,
    experts: dict,
    tasks: tuple[str, ...],
    plot: Path,
) -> list:
    notes = [_targets(task, variants, experts.get(task)) for task, variants in results.items()]
    notes += [
        "rti_state, rti_renoise: RTI entering the chain the way the checkpoint does not, "
        "all else equal, one action per prediction: the shifted guess taken as the state "
        "at K' (the paper's way) or re-noised to level K' by the forward process "
        "(Diffuser-style).",
        "K' is each checkpoint's stored value, chosen by `warmloop calibrate-rti` "
        "(offline estimate, then a closed-loop check; see checkpoints/README.md), and each "
        "warm update denoises from it as the checkpoint says: "
        + ", ".join(
            f"{task} K' = {r['k_prime']} ({r['warm_start']}, {r['sampler']}, {r['calls']} calls)"
            for task, r in rti.items()
        )
        + ".",
        f"![success against latency]({Path(*plot.parts[1:])})",
    ]
    missing = [task for task in tasks if task not in results]
    if missing:
        notes.append(f"No shipped checkpoint for {', '.join(missing)}: no rows (keys are null).")
    return notes


def _targets(task: str, variants: dict[str, EvalResult], expert: float | None) -> str:
    rti, ddpm, ddim = (variants[k] for k in ("rti", "ddpm100", "ddim10"))
    # Rates are counts over episodes: round so that exactly 3 points is within 3 points.
    gap = round(ddpm.success_rate - rti.success_rate, 9)
    text = (
        f"{task} targets: RTI success within 3 points of DDPM-100: {-gap:+.2f} "
        f"({'met' if gap <= 0.03 else 'NOT met'}); RTI latency "
        f"{ddpm.latency_p50_ms / rti.latency_p50_ms:.1f}x below DDPM-100 (target 25x) and "
        f"{ddim.latency_p50_ms / rti.latency_p50_ms:.1f}x below DDIM-10 (target 3x)"
    )
    if expert:
        met = ddpm.success_rate >= 0.9 * expert
        text += (
            f"; DDPM-100 success {ddpm.success_rate:.2f} against the expert's {expert:.2f} "
            f"(target >= 90% of it: {'met' if met else 'NOT met'})"
        )
    return text + "."
