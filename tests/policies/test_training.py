"""A tiny policy trained on a two-mode toy task; checkpoints and their failure modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policies.diffusion import checkpoint as ckpt
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.policy import DiffusionPolicy
from policies.diffusion.training import learning_rate, prepare, train
from policies.interface import Policy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every episode is constant: the chunk is either all +0.8 or all −0.8."""
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    rng = np.random.default_rng(0)
    observations = [rng.normal(0, 0.01, (8, 1)).astype(np.float32) for _ in range(64)]
    actions = [np.full((8, 1), rng.choice([-0.8, 0.8]), np.float32) for _ in range(64)]
    config = DiffusionConfig(
        obs_dim=1,
        action_dim=1,
        pred_horizon=8,
        action_horizon=4,
        down_dims=(16, 32),
        step_embed_dim=16,
        batch_size=64,
        num_steps=600,
        warmup_steps=20,
        checkpoint_every=300,
        lr=1e-3,
    )
    out = tmp_path_factory.mktemp("toy")
    losses = train(config, prepare(config, observations, actions), out, progress=False)
    return out, losses


def test_training_lowers_the_loss_and_samples_both_modes(trained) -> None:
    out, losses = trained
    assert losses["final_loss"] < 0.6 * losses["first_loss"]
    policy = DiffusionPolicy(out, sampler="ddpm", seed=1)
    assert isinstance(policy, Policy)
    means = [policy.infer(np.zeros((2, 1), np.float32)).mean() for _ in range(16)]
    assert any(m > 0.5 for m in means) and any(m < -0.5 for m in means)
    on_a_mode = [abs(abs(m) - 0.8) < 0.25 for m in means]  # not between the modes
    assert sum(on_a_mode) >= 12


def test_rti_warm_starts_after_the_first_call_and_reset_clears_it(trained) -> None:
    out, _ = trained
    policy = DiffusionPolicy(out, sampler="rti", k_prime=2, seed=2)
    policy.infer(np.zeros((2, 1), np.float32))
    assert policy.network_calls == 100  # the first prediction denoises fully
    first = policy.rti.guess.clone()
    policy.infer(np.zeros((2, 1), np.float32))
    assert policy.network_calls == 103  # K' + 1
    # The warm start keeps the mode chosen at the first call.
    assert torch.sign(policy.rti.guess.mean()) == torch.sign(first.mean())
    policy.reset()
    assert not policy.rti.warm
    policy.infer(np.zeros((2, 1), np.float32))
    assert policy.network_calls == 203


def test_rti_re_anchors_every_nth_prediction_by_ddim_and_a_reset_restarts_the_count(
    trained,
) -> None:
    out, _ = trained
    policy = DiffusionPolicy(out, sampler="rti", k_prime=2, seed=2, anchor_every=3, anchor_steps=5)
    calls = []
    for _ in range(7):
        before = policy.network_calls
        policy.infer(np.zeros((2, 1), np.float32))
        calls.append(policy.network_calls - before)
    # The first fully, then K' + 1 twice, then a 5-step DDIM anchor, and so on.
    assert calls == [100, 3, 3, 5, 3, 3, 5]
    policy.reset()
    policy.infer(np.zeros((2, 1), np.float32))
    policy.infer(np.zeros((2, 1), np.float32))
    assert policy.network_calls - sum(calls) == 100 + 3
    # A batch anchors each slot on its own count.
    policy.reset()
    zeros = np.zeros((2, 2, 1), np.float32)
    policy.infer_batch(zeros, [0, 1])
    policy.reset(1)
    for _ in range(2):
        policy.infer_batch(zeros, [0, 1])
    before = policy.network_calls
    policy.infer_batch(zeros, [0, 1])  # slot 0's fourth prediction anchors; slot 1 is warm
    assert policy.network_calls - before == 5 + 3
    # Inpainted RTI keeps its frozen prefix: it never re-anchors (nor does ONNX's).
    inpainted = DiffusionPolicy(
        out, sampler="rti", k_prime=2, seed=2, anchor_every=2, anchor_steps=5,
        inpaint="replace", frozen=1,
    )  # fmt: skip
    for _ in range(3):
        inpainted.infer(np.zeros((2, 1), np.float32))
    assert inpainted.network_calls == 100 + 3 + 3
    with pytest.raises(ValueError, match="anchor_steps"):
        DiffusionPolicy(out, sampler="rti", anchor_every=4, anchor_steps=0)
    with pytest.raises(ValueError, match="anchor_every"):
        DiffusionPolicy(out, sampler="rti", anchor_every=-1)


def test_the_warm_start_mode_can_be_chosen_per_policy(trained) -> None:
    out, _ = trained
    guesses = {}
    for mode in ("state", "renoise"):
        policy = DiffusionPolicy(out, sampler="rti", k_prime=2, seed=4, warm_start=mode)
        assert policy.warm_start == mode
        for _ in range(2):  # a full chain, then one warm start from the same guess
            policy.infer(np.zeros((2, 1), np.float32))
        guesses[mode] = policy.rti.guess
    # Same seed, same first chain: only the way into the chain at K' differs.
    assert not torch.allclose(guesses["state"], guesses["renoise"])
    with pytest.raises(ValueError, match="warm_start"):
        DiffusionPolicy(out, sampler="rti", warm_start="diffuser")
    with pytest.raises(ValueError, match="rti_sampler"):
        DiffusionPolicy(out, sampler="rti", k_prime=4, rti_steps=2)  # strided needs DDIM
    with pytest.raises(ValueError, match="K'"):
        DiffusionPolicy(out, sampler="rti", k_prime=1, rti_sampler="ddim", rti_steps=3)


def test_a_batch_keeps_one_warm_start_per_slot(trained) -> None:
    out, _ = trained
    policy = DiffusionPolicy(out, sampler="rti", k_prime=2, seed=3)
    zeros = np.zeros((2, 2, 1), np.float32)
    first = policy.infer_batch(zeros, [0, 1])
    assert (
        first.shape == (2, policy.pred_horizon, 1) and policy.network_calls == 100
    )  # one batched chain
    policy.reset(1)  # slot 1 starts a new episode; slot 0 stays warm
    assert policy._rti_state(0).warm and not policy._rti_state(1).warm
    policy.infer_batch(zeros, [0, 1])
    assert policy.network_calls == 100 + 3 + 100  # warm rows K'+1, the new episode fully
    # Each slot keeps its own mode: the guesses are the rows of the last batch.
    guesses = [policy._rti_state(slot).guess for slot in (0, 1)]
    assert all(g.shape == (1, policy.pred_horizon, 1) for g in guesses)
    with pytest.raises(ValueError, match="distinct"):
        policy.infer_batch(zeros, [0, 0])
    with pytest.raises(ValueError, match="shape"):
        policy.infer_batch(zeros, [0, 1, 2])


def test_bad_observations_are_refused(trained) -> None:
    policy = DiffusionPolicy(trained[0], sampler="ddim", ddim_steps=4)
    with pytest.raises(ValueError, match="shape"):
        policy.infer(np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        policy.infer(np.array([[np.nan], [0.0]], np.float32))


def test_checkpoint_round_trip_and_resume(trained, tmp_path) -> None:
    out, _ = trained
    loaded = ckpt.load(out)
    assert loaded.step == 600 and loaded.config.num_steps == 600
    ckpt.save(tmp_path / "copy", loaded)
    again = ckpt.load(tmp_path / "copy")
    assert again.config == loaded.config
    assert all(torch.equal(again.model_state[k], v) for k, v in loaded.model_state.items())
    # Training to the same step count again resumes at the end and does nothing.
    config = DiffusionConfig.from_dict(loaded.config.to_dict())
    assert (
        train(
            config,
            prepare(config, [np.zeros((4, 1), np.float32)], [np.zeros((4, 1), np.float32)]),
            out,
            progress=False,
        )["steps"]
        == 0
    )


def _copy(src, dst):
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_corrupted_wrong_shape_and_future_checkpoints_fail_clearly(trained, tmp_path) -> None:
    out, _ = trained
    corrupt = _copy(out, tmp_path / "corrupt")
    data = bytearray((corrupt / "model.safetensors").read_bytes())
    data[-20:] = b"\x00" * 20
    (corrupt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=r"model\.safetensors"):
        ckpt.load(corrupt)

    future = _copy(out, tmp_path / "future")
    meta = json.loads((future / "config.json").read_text())
    meta["schema_version"] = 99
    (future / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="schema_version 99"):
        ckpt.load(future)

    wrong = _copy(out, tmp_path / "wrong")
    meta = json.loads((wrong / "config.json").read_text())
    meta["config"]["down_dims"] = [16, 48]
    (wrong / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="shape"):
        DiffusionPolicy(wrong)

    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.load(tmp_path / "nothing")


def test_learning_rate_warms_up_then_decays() -> None:
    config = DiffusionConfig(obs_dim=1, action_dim=1, num_steps=1000, warmup_steps=100)
    assert learning_rate(0, config) == pytest.approx(1e-6)
    assert learning_rate(99, config) == pytest.approx(1e-4)
    assert learning_rate(550, config) == pytest.approx(5e-5)
    assert learning_rate(1000, config) == pytest.approx(0.0, abs=1e-12)


def test_config_names_the_bad_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"DiffusionConfig.pred_horizon = 10"):
        DiffusionConfig(obs_dim=1, action_dim=1, pred_horizon=10)
    with pytest.raises(ValueError, match=r"DiffusionConfig.rti_steps = 3"):
        DiffusionConfig(obs_dim=1, action_dim=1, rti_k_prime=4, rti_steps=3)  # DDPM: all
    with pytest.raises(ValueError, match=r"DiffusionConfig.rti_sampler = 'euler'"):
        DiffusionConfig(obs_dim=1, action_dim=1, rti_sampler="euler")
    DiffusionConfig(obs_dim=1, action_dim=1, rti_k_prime=4, rti_sampler="ddim", rti_steps=3)
    with pytest.raises(ValueError, match="unknown fields"):
        DiffusionConfig.from_dict({"obs_dim": 1, "action_dim": 1, "colour": "red"})
