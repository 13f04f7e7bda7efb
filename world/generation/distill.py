"""Distribution Matching Distillation: a few-step student from the multi-step teacher.

The student maps noise to a frame in `student_steps` calls. Its samples x are pushed
along −g, with g the difference of two denoisers evaluated on a re-noised x:

    x_t = alpha_t x + sigma_t eps,   t ~ U[0.02, 0.98]
    g   = (x̂_fake(x_t) − x̂_real(x_t)) / mean|x − x̂_real(x_t)|
    loss = ½ ‖x − stopgrad(x − g)‖²          (so d loss / d x = g)

x̂_real is the frozen teacher; x̂_fake is a copy of it trained online, by the ordinary
denoising loss, on the student's own samples, so it tracks the student's distribution.
When the two agree, g vanishes: the student's samples look like the teacher's. The
normaliser makes the step size independent of how far off the student currently is.
A multi-step student is trained by backward simulation (DMD2): its own first k steps,
without gradient, give the input of the step that is trained.

DMD alone cost 3 dB against the simulator's truth (issue #26): the student's frames came
out sharper than the truth, with noise the teacher never drew. DMD's own paper pairs the
distribution loss with a regression loss on noise/output pairs from the teacher; here
the training examples carry the simulator's frame for the same conditioning, so the
regression target is the truth itself:

    loss = ½ ‖x − stopgrad(x − g)‖² + λ ‖x − x_true‖²      (λ: regression_weight)

The regression pulls the student's few-step output to what the conditioning determines
(the warp where it is valid). At the default λ = 100 it carries most of the gradient:
2λ(x − x_true) is a few units per pixel for a student a few hundredths off the truth,
where the normaliser keeps |g| about 1 or less. The student is therefore mostly a
regression onto the truth; the distribution term corrects it, it does not keep the
unseen regions from averaging (they do blur: docs/world_model.md's sharpness figure).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.loop import clipped_step
from world.generation import checkpoint as ckpt
from world.generation.data import ExampleSampler, ExploreFrames
from world.generation.generator import Conditioning, add_noise, ddim_step, sampling_times
from world.generation.training import denoising_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 800
    batch_size: int = 8
    student_steps: int = 2
    lr_student: float = 1e-5
    lr_fake: float = 1e-4
    fake_updates: int = 2  # fake-score updates per student update (two time-scales)
    t_min: float = 0.02
    t_max: float = 0.98
    regression_weight: float = 100.0  # λ above (chosen on tuning paths); 0: DMD alone
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.student_steps <= 4:
            raise ValueError(f"student_steps must be 1..4, got {self.student_steps}")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError("need 0 <= t_min < t_max <= 1")
        if self.steps < 1 or self.batch_size < 1 or self.fake_updates < 1:
            raise ValueError("steps, batch_size and fake_updates must be at least 1")
        if not self.regression_weight >= 0.0:
            raise ValueError(f"regression_weight must be >= 0, got {self.regression_weight}")


def student_sample(
    student: nn.Module,
    cond: Conditioning,
    noise: torch.Tensor,
    steps: int,
    train_step: int,
) -> torch.Tensor:
    """The student's x0 at its `train_step`-th step; the steps before run without grad."""
    times = sampling_times(steps)
    x = noise
    with torch.no_grad():
        for k in range(train_step):
            x = ddim_step(student, x, times[k], times[k + 1], cond)
    t = torch.full((len(x),), times[train_step], device=x.device)
    return student(x, t, cond)


def dmd_gradient(
    x: torch.Tensor,
    cond: Conditioning,
    teacher: nn.Module,
    fake: nn.Module,
    generator: torch.Generator,
    t_min: float = 0.02,
    t_max: float = 0.98,
) -> torch.Tensor:
    """g = (x̂_fake − x̂_real) / mean|x − x̂_real|, per sample, on a re-noised x."""
    with torch.no_grad():
        t = t_min + (t_max - t_min) * torch.rand(len(x), generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        x_t = add_noise(x.detach(), noise, t)
        real, fake_x0 = teacher(x_t, t, cond), fake(x_t, t, cond)
        normaliser = (x.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        return (fake_x0 - real) / normaliser


def dmd_loss(x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return 0.5 * nn.functional.mse_loss(x, (x - gradient).detach())


def distill(
    teacher_dir: Path,
    data: ExploreFrames,
    out: Path,
    config: DistillConfig = DistillConfig(),
    *,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, float]:
    saved = ckpt.load(teacher_dir)
    if saved.role != "teacher":
        raise ValueError(f"{teacher_dir} holds a {saved.role}, not a teacher")
    teacher = saved.build(device)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    opt_student = torch.optim.AdamW(student.parameters(), lr=config.lr_student, weight_decay=0)
    opt_fake = torch.optim.AdamW(fake.parameters(), lr=config.lr_fake, weight_decay=0)
    sampler = ExampleSampler(data, seed=config.seed + 17, geometry=saved.config.geometry)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history: dict[str, list[float]] = {"dmd": [], "regression": [], "fake": [], "g_norm": []}
    bar = tqdm(range(config.steps), desc="distill world student (DMD)", disable=not progress)
    for _ in bar:
        truth, cond = sampler.batch(config.batch_size)
        truth = truth.to(device)
        cond = Conditioning(cond.images.to(device), cond.motion.to(device))
        noise = torch.randn((config.batch_size, 4, *cond.images.shape[-2:]), generator=generator)
        k = int(rng.integers(config.student_steps))
        x = student_sample(student, cond, noise.to(device), config.student_steps, k)
        gradient = dmd_gradient(x, cond, teacher, fake, generator, config.t_min, config.t_max)
        loss = dmd_loss(x, gradient)
        regression = nn.functional.mse_loss(x, truth)
        clipped_step(opt_student, loss + config.regression_weight * regression, student)
        for _ in range(config.fake_updates):
            fake_loss = denoising_loss(fake, x.detach().clamp(-1, 1), cond, generator)
            clipped_step(opt_fake, fake_loss, fake)
        history["dmd"].append(loss.item())
        history["regression"].append(regression.item())
        history["fake"].append(fake_loss.item())
        history["g_norm"].append(gradient.abs().mean().item())
        bar.set_postfix(g=f"{np.mean(history['g_norm'][-50:]):.3f}")
    ckpt.save(
        out,
        ckpt.GeneratorCheckpoint(
            saved.config,
            "student",
            config.student_steps,
            student.state_dict(),
            config.steps,
            {
                "teacher_step": saved.step,
                "teacher_sampling_steps": saved.sampling_steps,
                "dmd": asdict(config),
            },
        ),
    )
    return {name: float(np.mean(values[-100:])) for name, values in history.items()} | {
        "g_norm_first": float(np.mean(history["g_norm"][:100]))
    }
