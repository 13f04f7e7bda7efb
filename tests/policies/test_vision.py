"""Image observations: crops, the encoder, a tiny image policy that must use its camera,
the encoder run once per prediction, and export parity with the torch-free runtime."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.deploy.export import export
from policies.deploy.manifest import read_manifest
from policies.deploy.runtime import OnnxPolicy
from policies.diffusion.configuration import DiffusionConfig
from policies.diffusion.policy import DiffusionPolicy
from policies.diffusion.training import prepare, train
from policies.diffusion.vision import CameraEncoder, center_crop, random_crop
from tests.no_torch import run_without_torch

SIZE, CROP = 32, 28


def test_center_crop_takes_the_middle_and_random_crops_stay_inside() -> None:
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert torch.equal(center_crop(images, 4), images[..., 2:6, 2:6])
    generator = torch.Generator().manual_seed(0)
    crops = random_crop(images.repeat(50, 1, 1, 1), 5, generator)
    assert crops.shape == (100, 1, 5, 5)
    # Every crop is a contiguous 5×5 window of its own image, at varying offsets.
    tops = (crops[:, 0, 0, 0] % 64) // 8
    lefts = crops[:, 0, 0, 0] % 8
    assert tops.max() <= 3 and lefts.max() <= 3 and len(set(tops.tolist())) == 4
    for crop, top, left in zip(crops[:8], tops[:8].long(), lefts[:8].long(), strict=True):
        source = images[0 if crop[0, 0, 0] < 64 else 1, 0]
        assert torch.equal(crop[0], source[top : top + 5, left : left + 5])


def test_the_encoder_crops_randomly_in_training_and_centrally_otherwise() -> None:
    torch.manual_seed(0)
    encoder = CameraEncoder("small", CROP, 16)
    frames = torch.randint(0, 255, (3, SIZE, SIZE, 3), dtype=torch.uint8)
    assert encoder(frames).shape == (3, 16)
    first, second = encoder(frames), encoder(frames)
    assert not torch.allclose(first, second)  # other crops, other features
    encoder.eval()
    assert torch.equal(encoder(frames), encoder(frames))


def test_resnet18_backbone_takes_the_same_frames() -> None:
    encoder = CameraEncoder("resnet18", 84, 64).eval()
    with torch.no_grad():
        assert encoder(torch.zeros(1, 96, 96, 3, dtype=torch.uint8)).shape == (1, 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state_dims": (0, 1)}, "state_dims"),
        ({"crop_size": 40}, "crop_size"),
        ({"backbone": "vit"}, "backbone"),
        ({"cameras": ("top", "top")}, "cameras"),
        ({"cameras": ("a.b",)}, "cameras"),
        ({"aux_state_dims": (0,)}, "aux_state_dims"),  # the proprioception it is given
        ({"aux_state_dims": (1,), "aux_state_weight": 0.0}, "aux_state_weight"),
        ({"aux_state_dims": (1,), "cameras": (), "state_dims": ()}, "aux_state_dims"),
    ],
)
def test_image_config_mistakes_name_the_field(change, message) -> None:
    fields = {**_config_fields(), **change}
    with pytest.raises(ValueError, match=f"DiffusionConfig.{message}"):
        DiffusionConfig(**fields)


def _config_fields() -> dict:
    return {
        "obs_dim": 1,
        "action_dim": 2,
        "cameras": ("cam",),
        "state_dims": (0,),
        "image_size": SIZE,
        "crop_size": CROP,
        "image_features": 16,
        "obs_horizon": 2,
        "pred_horizon": 8,
        "action_horizon": 4,
        "down_dims": (32, 64),
        "step_embed_dim": 32,
        "train_steps": 20,
        "rti_k_prime": 2,
        "batch_size": 32,
        "num_steps": 300,
        "lr": 2e-3,
        "warmup_steps": 20,
        "checkpoint_every": 300,
        "ema_max_decay": 0.9,
    }


def _square_episodes(count: int, rng: np.random.Generator):
    """A camera sees a bright square; the action is where it is. Nothing else tells."""
    observations, actions, frames = [], [], []
    for _ in range(count):
        target = rng.uniform(-1, 1, 2)
        row, col = ((target + 1) / 2 * (SIZE - 8)).astype(int)
        image = np.full((SIZE, SIZE, 3), 30, np.uint8)
        image[row : row + 8, col : col + 8] = 230
        observations.append(np.zeros((4, 1), np.float32))
        actions.append(np.tile(target, (4, 1)).astype(np.float32))
        frames.append(np.repeat(image[None], 4, axis=0))
    return observations, actions, frames


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny image policy trained here (~10 s on 2 cores) on the square task."""
    torch.manual_seed(0)
    config = DiffusionConfig(**_config_fields())
    observations, actions, frames = _square_episodes(256, np.random.default_rng(0))
    data = prepare(config, observations, actions, {"cam": frames})
    out = tmp_path_factory.mktemp("image-policy")
    _train_on_one_thread(config, data, out)
    return out


def _train_on_one_thread(config: DiffusionConfig, data, out: Path) -> None:
    # One thread: a network this small gains nothing from two, and two threads on a
    # machine with one core busy elsewhere stall each other (330 s instead of ~10).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, data, out, progress=False)
    finally:
        torch.set_num_threads(threads)


def _predict(policy, episodes) -> np.ndarray:
    observations, _, frames = episodes
    chunks = []
    for state, window in zip(observations, frames, strict=True):
        policy.reset()
        chunks.append(policy.infer(state[:2], {"cam": window[:2]}))
    return np.stack(chunks)


def test_a_tiny_image_policy_reads_its_camera(trained: Path) -> None:
    policy = DiffusionPolicy(trained, sampler="ddim", ddim_steps=5, seed=0)
    episodes = _square_episodes(64, np.random.default_rng(1))  # squares it never saw
    targets = np.stack([a[0] for a in episodes[1]])
    real = np.abs(_predict(policy, episodes)[:, 1] - targets).mean()
    shuffled_frames = [episodes[2][i] for i in np.random.default_rng(2).permutation(64)]
    shuffled = np.abs(
        _predict(policy, (episodes[0], episodes[1], shuffled_frames))[:, 1] - targets
    ).mean()
    # Without the camera an action can only be a guess (~0.67 for uniform squares).
    assert real < 0.25 and shuffled > 2 * real, (real, shuffled)


def test_a_state_head_teaches_the_features_what_the_policy_is_not_told(tmp_path) -> None:
    """The square's row, a hidden observation entry, learnt by the state head (training
    only): on squares it never saw, the features place it far better than guessing."""
    config = DiffusionConfig(**{**_config_fields(), "aux_state_dims": (1,), "num_steps": 100})
    observations, actions, frames = _square_episodes(64, np.random.default_rng(0))
    with_row = [
        np.concatenate([o, a[:, :1]], axis=1) for o, a in zip(observations, actions, strict=True)
    ]
    _train_on_one_thread(config, prepare(config, with_row, actions, {"cam": frames}), tmp_path)
    policy = DiffusionPolicy(tmp_path, sampler="ddim", ddim_steps=5, seed=0)
    unseen = _square_episodes(64, np.random.default_rng(1))
    rows = np.array([a[0, 0] for a in unseen[1]])
    state = np.stack([o[:2] for o in unseen[0]])
    images = {"cam": np.stack([f[:2] for f in unseen[2]])}
    with torch.no_grad():
        cond = policy.condition(state, list(range(64)), images)
        predicted = policy.network.predict_state(cond, 1)[:, -1, 0].numpy()
    # Targets are normalised to [-1, 1] over the training rows, which span about [-1, 1].
    error, guess = np.abs(predicted - rows).mean(), np.abs(rows - rows.mean()).mean()
    assert error < 0.5 * guess, (error, guess)
    assert policy.infer(state[0], {"cam": images["cam"][0]}).shape == (8, 2)


def test_the_encoder_runs_once_per_prediction_and_rti_reuses_it(trained: Path) -> None:
    policy = DiffusionPolicy(trained, sampler="rti", k_prime=2, seed=0)
    observations, _, frames = _square_episodes(1, np.random.default_rng(3))
    window = {"cam": frames[0][:2]}
    policy.infer(observations[0][:2], window)  # cold: the full chain on one encoding
    assert (policy.encoder_calls, policy.network_calls) == (1, 20)
    for prediction in range(2, 5):
        policy.infer(observations[0][:2], window)
        assert policy.encoder_calls == prediction
        assert policy.network_calls == 20 + 3 * (prediction - 1)  # K'+1 U-Net calls each


def test_bad_images_are_value_errors_that_say_what(trained: Path) -> None:
    policy = DiffusionPolicy(trained, sampler="ddim", ddim_steps=2)
    state = np.zeros((2, 1), np.float32)
    good = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    for images, message in (
        (None, "pass their images"),
        ({"other": good}, "no frames of camera 'cam'"),
        ({"cam": good.astype(np.float32)}, "uint8"),
        ({"cam": good[:, :16]}, "shape"),
    ):
        with pytest.raises(ValueError, match=message):
            policy.infer(state, images)


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("image-export")
    export(trained, out)
    return out


def test_export_adds_an_encoder_graph_and_describes_the_cameras(exported: Path) -> None:
    manifest = read_manifest(exported)
    assert set(manifest.graphs) == {"network", "rti_update", "encoder"}
    assert manifest.cameras == [
        {"name": "cam", "height": SIZE, "width": SIZE, "crop": CROP}
        | {"dtype": "uint8", "layout": "HWC", "channels": "RGB"}
    ]
    assert manifest.graphs["encoder"].inputs["image_cam"] == ["batch", 2, SIZE, SIZE, 3]


def test_onnx_image_policy_matches_torch(trained: Path, exported: Path) -> None:
    torch_policy = DiffusionPolicy(trained, sampler="ddim", ddim_steps=5)
    onnx_policy = OnnxPolicy(exported, sampler="ddim", ddim_steps=5)
    observations, _, frames = _square_episodes(8, np.random.default_rng(4))
    for state, window in zip(observations, frames, strict=True):
        images = {"cam": window[:2]}
        expected = torch_policy.condition(state[None, :2], (0,), {"cam": window[None, :2]})
        cond = onnx_policy.condition(state[:2], images)
        assert np.abs(cond - expected.numpy()).max() <= 1e-4
        x = np.random.default_rng(5).standard_normal((1, 8, 2)).astype(np.float32)
        eps_onnx = onnx_policy.eps_fn(cond)(x, 7)
        with torch.no_grad():
            eps_torch = torch_policy.network(torch.from_numpy(x), torch.tensor([7]), expected)
        assert np.abs(eps_onnx - eps_torch.numpy()).max() <= 1e-4
    assert onnx_policy.encoder_calls == 8


def test_the_image_runtime_works_where_importing_torch_fails(exported: Path) -> None:
    result = run_without_torch(f"""
import numpy as np
from policies.deploy.runtime import OnnxPolicy
policy = OnnxPolicy({str(exported)!r})
frames = {{"cam": np.zeros((2, {SIZE}, {SIZE}, 3), np.uint8)}}
for _ in range(3):
    actions = policy.infer(np.zeros((2, 1), np.float32), frames)
assert actions.shape == (8, 2), actions.shape
assert policy.encoder_calls == 3 and "torch" not in sys.modules
print("ok")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(cameras=[]), "cameras and graphs.encoder must come together"),
        (lambda m: m["cameras"][0].update(channels="BGR"), "format {'channels': 'BGR'}"),
        (lambda m: m["cameras"][0].update(crop=SIZE + 1), "crop <= size"),
        (lambda m: m.update(state_dims=[0, 1]), "state_dims and image_features"),
    ],
)
def test_camera_mistakes_in_the_manifest_are_refused(exported, tmp_path, edit, message) -> None:
    import json
    import shutil

    from policies.deploy.manifest import ExportError

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=re.escape(message)):
        read_manifest(copy)


def test_the_history_keeps_each_cameras_frames_beside_the_states() -> None:
    from policies.node import EpisodeHistory
    from streams import Observation

    history = EpisodeHistory(2, ("cam",))

    def observation(step: int) -> Observation:
        frame = np.full((SIZE, SIZE, 3), step, np.uint8)
        return Observation(state=np.full(1, step, np.float32), images={"cam": frame}, step=step)

    history.add(observation(0))
    states, images = history.window()
    assert states[:, 0].tolist() == [0, 0] and images["cam"][:, 0, 0, 0].tolist() == [0, 0]
    history.add(observation(1))
    states, images = history.window()
    assert states[:, 0].tolist() == [0, 1] and images["cam"][:, 0, 0, 0].tolist() == [0, 1]


def test_a_served_image_policy_answers_a_client_that_sends_frames(exported, tmp_path) -> None:
    from policies.client import PolicyClient
    from streams import RemoteError
    from tests.policies.test_serve import _Served

    endpoint = f"ipc://{tmp_path}/serve.sock"
    observations, _, frames = _square_episodes(1, np.random.default_rng(6))
    with _Served(exported, endpoint), PolicyClient(endpoint, name="camera-robot") as client:
        for step in range(3):
            chunk = client.infer(observations[0][step], step=step, images={"cam": frames[0][step]})
            assert chunk.actions.shape == (7, 2)  # rows To-1.. of the chunk
        with pytest.raises(RemoteError, match="no image of camera 'cam'"):
            client.infer(observations[0][3], step=3)
