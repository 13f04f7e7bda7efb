"""ONNX export, parity with torch, and the torch-free runtime, on the shipped checkpoint."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from policies.deploy.export import export
from policies.deploy.manifest import ExportError, read_manifest
from policies.deploy.runtime import OnnxPolicy, choose_providers
from policies.diffusion.policy import DiffusionPolicy
from policies.diffusion.sampler import rti_update, shift_chunk
from policies.interface import Policy
from sim.envs import make_env
from tests.no_torch import run_without_torch

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "pickplace"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export(CHECKPOINT, out)
    return out


@pytest.fixture(scope="module")
def torch_policy() -> DiffusionPolicy:
    return DiffusionPolicy(CHECKPOINT)


def real_conditions(policy: DiffusionPolicy, count: int) -> np.ndarray:
    """Normalised conditions from PickPlace observations along an expert's episode."""
    from sim.tasks.pickplace import PickPlaceExpert

    env = make_env("pickplace")
    observation, _ = env.reset(seed=3)
    expert = PickPlaceExpert(np.random.default_rng(0))
    observations = [observation]
    for _ in range(count):
        observation, *_ = env.step(expert.act(observation))
        observations.append(observation)
    env.close()
    pairs = np.stack([observations[i : i + 2] for i in range(count)]).astype(np.float32)
    return policy.obs_normalizer.normalize(pairs).reshape(count, -1)


@torch.no_grad()
def torch_rti_update(torch_policy, cond, previous, k_prime, noise, **how) -> np.ndarray:
    """The torch sampler's RTI update with the policy's network, one action executed."""

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        return torch_policy.network(x, torch.full((1,), t), torch.from_numpy(cond))

    update = rti_update(
        eps, torch_policy.schedule, torch.from_numpy(previous), 1, k_prime, noise, **how
    )
    return update.numpy()


def test_export_writes_checked_graphs_and_a_manifest(exported: Path, torch_policy) -> None:
    manifest = read_manifest(exported)
    assert set(manifest.graphs) == {"network", "rti_update"}
    for entry in manifest.graphs.values():
        onnx.checker.check_model(str(exported / entry.file), full_check=True)
    # K' is the checkpoint's; DDPM steps K'..1 each draw noise, step 0 does not.
    assert manifest.k_prime == torch_policy.k_prime and manifest.noise_draws == manifest.k_prime
    assert manifest.task == "pickplace" and manifest.discrete_dims == [3]


def test_network_matches_torch_on_random_and_real_inputs(exported, torch_policy) -> None:
    policy = OnnxPolicy(exported)
    rng = np.random.default_rng(0)
    real = real_conditions(torch_policy, 24)
    for cond in (rng.standard_normal((16, 22), dtype=np.float32), real):
        batch = len(cond)  # also checks the dynamic batch axis
        sample = rng.standard_normal((batch, 16, 4), dtype=np.float32)
        steps = rng.integers(0, 100, batch)
        with torch.no_grad():
            expected = torch_policy.network(
                torch.from_numpy(sample), torch.from_numpy(steps), torch.from_numpy(cond)
            ).numpy()
        got = policy.network.run({"sample": sample, "step": steps, "cond": cond})
        assert np.abs(got - expected).max() <= 1e-4


def test_unrolled_rti_graph_reproduces_the_torch_update_from_the_same_noise(
    exported, torch_policy
) -> None:
    policy = OnnxPolicy(exported)
    rng = np.random.default_rng(1)
    cond = real_conditions(torch_policy, 1)
    previous = rng.uniform(-1, 1, (1, 16, 4)).astype(np.float32)
    k_prime = policy.k_prime
    noise = rng.standard_normal((k_prime, 1, 16, 4), dtype=np.float32)
    draws = iter(torch.from_numpy(noise))
    expected = torch_rti_update(torch_policy, cond, previous, k_prime, lambda: next(draws))
    got = policy.rti_update(shift_chunk(previous, 1), cond, noise)
    assert np.abs(got - expected).max() <= 1e-4


def test_strided_ddim_rti_exports_and_matches_torch(tmp_path, torch_policy) -> None:
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, checkpoint, ignore=shutil.ignore_patterns("train.*"))
    meta = json.loads((checkpoint / "config.json").read_text())
    meta["config"].update(rti_k_prime=6, rti_sampler="ddim", rti_steps=3)
    (checkpoint / "config.json").write_text(json.dumps(meta))  # weights, so hash, unchanged
    manifest = export(checkpoint, tmp_path / "export")
    assert (manifest.rti_sampler, manifest.rti_steps, manifest.noise_draws) == ("ddim", 3, 0)
    policy = OnnxPolicy(tmp_path / "export")
    cond = real_conditions(torch_policy, 1)
    previous = np.random.default_rng(2).uniform(-1, 1, (1, 16, 4)).astype(np.float32)
    expected = torch_rti_update(torch_policy, cond, previous, 6, None, sampler="ddim", steps=3)
    assert np.abs(policy.rti_update(shift_chunk(previous, 1), cond) - expected).max() <= 1e-4
    assert policy.network_calls == 3
    torch_ddim = DiffusionPolicy(checkpoint, seed=0)
    torch_ddim.infer(np.zeros((2, 11), np.float32))
    torch_ddim.infer(np.zeros((2, 11), np.float32))
    assert torch_ddim.network_calls == 100 + 3  # a full chain, then one 3-step update


def test_onnx_policy_follows_the_policy_interface(exported) -> None:
    policy = OnnxPolicy(exported, seed=0)
    assert isinstance(policy, Policy)
    # What the session runs on is what choose_providers offered it, the CPU last.
    assert policy.providers[-1] == "CPUExecutionProvider"
    assert set(policy.providers) <= set(choose_providers())
    observations = np.zeros((2, 11), np.float32)
    first = policy.infer(observations)
    assert first.shape == (16, 4) and policy.network_calls == 100  # full DDPM first
    policy.infer(observations)
    assert policy.network_calls == 100 + policy.k_prime + 1  # then one RTI update
    assert set(np.unique(first[:, 3])) <= {-1.0, 1.0}
    policy.reset()
    policy.infer(observations)
    assert policy.network_calls == 200 + policy.k_prime + 1
    again = OnnxPolicy(exported, seed=0)
    np.testing.assert_array_equal(again.infer(observations), first)  # seeded: reproducible


@pytest.mark.parametrize("sampler", ["ddim", "rti"])
def test_onnx_prefix_replacement_keeps_the_frozen_rows_exactly(exported, sampler) -> None:
    """Under a delay of 2 ticks (+ the executed action), the warm chunk's first 3 rows are
    the previous chunk's plan for the same ticks, bit for bit (#21)."""
    policy = OnnxPolicy(exported, sampler=sampler, ddim_steps=4, inpaint="replace", frozen=3)
    observations = np.zeros((2, 11), np.float32)
    policy.predict_normalized(observations)
    plan = shift_chunk(policy.rti.guess, 1)  # as stored: discrete dimensions clipped
    calls = policy.network_calls
    warm = policy.predict_normalized(observations + 0.01)
    np.testing.assert_array_equal(warm[:, :3], plan[:, :3])
    assert not np.array_equal(warm[:, 3:], plan[:, 3:])
    steps = 4 if sampler == "ddim" else policy.rti_calls
    assert policy.network_calls - calls == steps  # step by step, on the network graph


def _replaced_ddim(eps, schedule, draws, known, convert):
    """One DDIM-4 prediction with its first 3 rows replaced by `known`, from `draws`."""
    from policies.diffusion.inpainting import Inpainting
    from policies.diffusion.sampler import sample_ddim

    fresh = iter(draws)
    with torch.no_grad():
        out = sample_ddim(
            eps, schedule, convert(next(fresh)), schedule.ddim_timesteps(4),
            noise=lambda: convert(next(fresh)),
            inpainting=Inpainting(known=convert(known), frozen=3),
        )  # fmt: skip
    return np.asarray(out)


def test_onnx_replacement_matches_torch_from_the_same_noise(exported, torch_policy) -> None:
    """The same numpy sampler drives both: one warm DDIM prediction with its prefix
    replaced, from the same noise, agrees with torch's to float32 tolerance."""
    rng = np.random.default_rng(0)
    cond = real_conditions(torch_policy, 1)
    known = shift_chunk(rng.standard_normal((1, 16, 4)).astype(np.float32), 1)
    draws = rng.standard_normal((6, 1, 16, 4)).astype(np.float32)
    onnx_policy = OnnxPolicy(exported, sampler="ddim", inpaint="replace", frozen=3)

    def torch_eps(x, t):
        return torch_policy.network(x, torch.full((1,), t), torch.from_numpy(cond))

    ours = _replaced_ddim(onnx_policy.eps_fn(cond), onnx_policy.schedule, draws, known, np.asarray)
    theirs = _replaced_ddim(torch_eps, torch_policy.schedule, draws, known, torch.from_numpy)
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    np.testing.assert_array_equal(ours[:, :3], known[:, :3])


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ({"inpaint": "guide", "frozen": 2}, "torch only"),
        ({"inpaint": "replace", "frozen": 2, "sampler": "ddpm"}, "ddim or rti"),
        ({"inpaint": "replace", "frozen": 16}, "frozen must be in 0..15"),
    ],
)
def test_onnx_inpainting_refuses_what_it_cannot_do(exported, how, message) -> None:
    with pytest.raises(ValueError, match=message):
        OnnxPolicy(exported, **how)


ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("available", "gpu", "requested", "expected"),
    [
        (ALL, True, None, ALL),  # a GPU build on a GPU machine: the GPU first
        (ALL, False, None, ["CPUExecutionProvider"]),  # a GPU build, no GPU visible
        (["CPUExecutionProvider"], True, None, ["CPUExecutionProvider"]),  # a CPU build
        (ALL, True, ["CUDAExecutionProvider"], ["CUDAExecutionProvider"]),
        (ALL, False, ["CUDAExecutionProvider"], "no GPU is visible"),  # refused, said why
        (["CPUExecutionProvider"], True, ["CUDAExecutionProvider"], "not in this onnxruntime"),
    ],
)
def test_providers_follow_the_build_and_the_gpu(
    monkeypatch, available, gpu, requested, expected
) -> None:
    import policies.deploy.runtime as runtime

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: list(available))
    monkeypatch.setattr(runtime, "gpu_visible", lambda: gpu)
    if isinstance(expected, str):
        with pytest.raises(ExportError, match=f"none of the providers .* usable here .*{expected}"):
            runtime.choose_providers(requested)
    else:
        assert runtime.choose_providers(requested) == expected


def test_a_fallback_to_the_cpu_is_a_warning_that_says_why(monkeypatch, caplog) -> None:
    import policies.deploy.runtime as runtime

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: list(ALL))
    monkeypatch.setattr(runtime, "gpu_visible", lambda: False)
    asked = runtime.parse_providers("cuda,cpu")
    assert asked == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        assert runtime.choose_providers(asked) == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider skipped, in this build, but no GPU is visible" in caplog.text
    assert "running on CPUExecutionProvider" in caplog.text


def test_providers_on_this_machine_end_with_the_cpu() -> None:
    assert choose_providers()[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    "observations, message",
    [
        (np.full((2, 11), np.nan, np.float32), "NaN"),
        (np.zeros((2, 10), np.float32), "shape"),
        (np.zeros((1, 11), np.float32), "shape"),
    ],
)
def test_bad_observations_raise_value_errors(exported, observations, message) -> None:
    with pytest.raises(ValueError, match=message):
        OnnxPolicy(exported).infer(observations)


def _copy(exported: Path, tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(exported, target)
    return target


def _edit_manifest(directory: Path, edit) -> None:
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_an_export_re_anchors_as_its_manifest_says(exported, tmp_path) -> None:
    """Every 3rd prediction after the first is a 5-call DDIM one on network.onnx."""
    directory = _copy(exported, tmp_path)
    assert read_manifest(exported).rti_anchor_every == 0  # PickPlace never re-anchors
    _edit_manifest(directory, lambda data: data.update(rti_anchor_every=3, rti_anchor_steps=5))
    policy = OnnxPolicy(directory)
    observations = np.zeros((policy.obs_horizon, policy.obs_dim), np.float32)
    calls = []
    for _ in range(7):
        before = policy.network_calls
        chunk = policy.infer(observations)
        calls.append(policy.network_calls - before)
        assert np.isfinite(chunk).all()
    warm = policy.rti_calls  # K' + 1
    assert calls == [100, warm, warm, 5, warm, warm, 5]
    policy.reset()
    before = policy.network_calls
    policy.infer(observations)
    assert policy.network_calls - before == 100


def test_other_schema_version_is_refused(exported, tmp_path) -> None:
    directory = _copy(exported, tmp_path)
    _edit_manifest(directory, lambda d: d.update(schema_version=99))
    with pytest.raises(ExportError, match=r"manifest.json: schema_version 99"):
        OnnxPolicy(directory)


def test_missing_files_are_named(exported, tmp_path) -> None:
    directory = _copy(exported, tmp_path)
    (directory / "rti_update.onnx").unlink()
    with pytest.raises(ExportError, match=r"rti_update.onnx: missing"):
        OnnxPolicy(directory)
    with pytest.raises(ExportError, match=r"manifest.json: missing"):
        OnnxPolicy(tmp_path / "nowhere")


def test_weight_hash_mismatch_is_refused(exported, tmp_path) -> None:
    directory = _copy(exported, tmp_path)
    with open(directory / "network.onnx", "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x00" * 8)  # flip weights, keep the size
    with pytest.raises(ExportError, match=r"network.onnx: weight hash does not match"):
        OnnxPolicy(directory)


def test_graph_shapes_that_disagree_with_the_manifest_are_refused(exported, tmp_path) -> None:
    directory = _copy(exported, tmp_path)

    def widen_condition(data: dict) -> None:  # a manifest consistent in itself
        data["graphs"]["network"]["inputs"]["cond"] = ["batch", 24]
        data["graphs"]["rti_update"]["inputs"]["cond"] = [1, 24]
        data["obs_dim"] = 12
        for key in ("low", "high"):
            data["obs_normalizer"][key].append(0.0)

    _edit_manifest(directory, widen_condition)
    with pytest.raises(ExportError, match=r"network.onnx: input cond has shape"):
        OnnxPolicy(directory)


def _set(key: str, value):
    return lambda data: data.update({key: value})


def _truncate_normalizer(data: dict) -> None:
    data["obs_normalizer"]["low"] = data["obs_normalizer"]["low"][:5]


def _nudge_schedule(data: dict) -> None:
    data["alphas_cumprod"][3] *= 1.0001


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("obs_dim", "11"), r"field obs_dim must be int, got \"11\""),
        (_set("rti_clip", 1), "field rti_clip must be bool"),
        (_set("discrete_dims", [3.0]), "field discrete_dims must be tuple"),
        (_set("obs_dim", 12), "graphs.network input cond has shape .* obs_dim 12"),
        (_set("action_dim", 5), "graphs.network input sample has shape"),
        (_truncate_normalizer, "field obs_normalizer.low must be 11 numbers"),
        (_nudge_schedule, "field alphas_cumprod disagrees with train_steps 100"),
        (_set("rti_timesteps", [2, 0]), "field rti_timesteps disagrees"),
        (_set("rti_anchor_every", -1), "field rti_anchor_every must be >= 0"),
        (_set("rti_anchor_steps", 0), "field rti_anchor_steps must be in 1..100"),
    ],
)
def test_manifest_mistakes_name_the_file_and_the_field(exported, tmp_path, edit, message) -> None:
    directory = _copy(exported, tmp_path)
    _edit_manifest(directory, edit)
    with pytest.raises(ExportError, match=rf"manifest.json: {message}"):
        OnnxPolicy(directory)


def test_runtime_works_where_importing_torch_fails(exported) -> None:
    result = run_without_torch(f"""
import numpy as np
from policies.deploy.runtime import OnnxPolicy
policy = OnnxPolicy({str(exported)!r})
policy.infer(np.zeros((2, 11), np.float32))
actions = policy.infer(np.zeros((2, 11), np.float32))
assert actions.shape == (16, 4), actions.shape
assert "torch" not in sys.modules
print("ok", policy.providers)
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


@pytest.mark.gpu
def test_cuda_session_uses_the_gpu_and_io_binding_matches_the_cpu(exported) -> None:
    gpu = OnnxPolicy(exported, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    cpu = OnnxPolicy(exported, providers=["CPUExecutionProvider"])
    assert gpu.providers[0] == "CUDAExecutionProvider" and gpu.network.on_gpu
    rng = np.random.default_rng(2)
    shifted = rng.uniform(-1, 1, (1, 16, 4)).astype(np.float32)
    cond = rng.standard_normal((1, 22), dtype=np.float32)
    noise = rng.standard_normal((2, 1, 16, 4), dtype=np.float32)
    np.testing.assert_allclose(
        gpu.rti_update(shifted, cond, noise), cpu.rti_update(shifted, cond, noise), atol=1e-3
    )
