"""A SHaDe-style 4D radiance field on tri-planes.

    x (world, inside `bounds`), t (scene time)
      │
      ├─ deformation: D_xy(x,y,t), D_xz(x,z,t), D_yz(y,z,t)   [C_d, T, R, R] volumes,
      │               trilinear in (u, v, t): time enters by interpolation along T
      │   Δx = W·(d_xy + d_xz + d_yz) + b                      W: linear C_d → 3, no MLP
      │
      └─ canonical at x + Δx: F_xy · F_xz · F_yz               [C, R, R], bilinear
              │ (Hadamard product, K-Planes style: a point is where all three agree)
              ▼
         decoder MLP → density σ ≥ 0, spherical-harmonics coefficients (degree ≤ 2)
              ▼
         SHaDe head: per-band weights w_0..w_L = attention of a time query over learned
         band embeddings; colour = sigmoid(Σ_l w_l Σ_m c_lm Y_lm(view direction))

Coordinates are normalised to [−1, 1]³ by `bounds` and time to [−1, 1] by the time
range, so the planes cover the scene exactly. Everything is torch, CPU or GPU alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PLANES = ("xy", "xz", "yz")
AXES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}

EXPLORE_BOUNDS = ((-3.1, -3.1, -0.05), (3.1, 3.1, 3.1))  # the Explore room, metres

# softplus(2.0) = ln(1 + e²) ≈ 2.127: the band head's output at initialisation (its bias
# is 2, its weights 0), so dividing by it starts every band weight at ≈ 1.
BAND_WEIGHT_SCALE = 2.127


@dataclass(frozen=True)
class FieldConfig:
    resolution: int = 64  # R: plane size
    channels: int = 16  # C: canonical features
    deform_channels: int = 8  # C_d: deformation features
    time_steps: int = 8  # T: deformation slices along time
    sh_degree: int = 2  # L ≤ 2
    hidden: int = 64  # decoder width
    band_dim: int = 16  # E: size of the band embeddings and the time query
    deform: bool = True  # False: the static ablation (no deformation at all)

    def __post_init__(self) -> None:
        if not 0 <= self.sh_degree <= 2:
            raise ValueError(f"sh_degree must be 0, 1 or 2, got {self.sh_degree}")
        if self.resolution < 2 or self.channels < 1 or self.time_steps < 1:
            raise ValueError("resolution >= 2, channels >= 1 and time_steps >= 1 are needed")


def sh_basis(directions: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical harmonics up to `degree` (≤ 2) of unit directions: (N, (L+1)²)."""
    x, y, z = directions.unbind(-1)
    basis = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        c1 = 0.4886025119029199
        basis += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        basis += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (3 * z * z - 1),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (x * x - y * y),
        ]
    return torch.stack(basis, -1)


# Up to this many distinct times in a batch, sampling the deformation one time at a
# time in 2-D beats one 3-D sample of the whole batch (its backward pass above all).
FEW_TIMES = 16


def _plane_grids(unit: torch.Tensor) -> torch.Tensor:
    """(3, N, 1, 2) sampling coordinates of points (N, 3) on the xy, xz and yz planes:
    the three planes are looked up in one grid_sample call, as a batch of three (~30 %
    faster on a 2-core CPU than three calls)."""
    return torch.stack([unit[:, [a, b]] for a, b in AXES.values()]).unsqueeze(2)


def _one_time(tn: torch.Tensor) -> bool:
    """Whether all points share one time: a rendered image or a point cloud, not a
    training batch drawn from many frames."""
    return len(tn) > 1 and bool((tn == tn[0]).all())


class ShadeHead(nn.Module):
    """Per-band weights of the SH colour from attention over learned band embeddings.

    The query is a function of time, so how much view dependence (higher bands) the
    colour carries can change as the scene moves. Weights start near 1 for every band.
    """

    def __init__(self, degree: int, dim: int):
        super().__init__()
        self.degree, self.dim = degree, dim
        self.bands = nn.Parameter(torch.randn(degree + 1, dim) * 0.1)
        self.query = nn.Linear(2 * 4, dim)  # from a sinusoidal embedding of time
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, 2.0)  # softplus(2) = BAND_WEIGHT_SCALE → weights ≈ 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (N,) normalised time → band weights (N, L+1)."""
        frequencies = 2.0 ** torch.arange(4, device=t.device, dtype=t.dtype) * math.pi
        embedded = torch.cat(
            [torch.sin(t[:, None] * frequencies), torch.cos(t[:, None] * frequencies)], -1
        )
        query = self.query(embedded)  # (N, E)
        keys, values = self.key(self.bands), self.value(self.bands)  # (L+1, E)
        attention = torch.softmax(query @ keys.T / math.sqrt(self.dim), -1)  # (N, L+1)
        mixed = attention[:, :, None] * values[None]  # each band attends, keeps its identity
        return F.softplus(self.out(mixed + self.bands[None]).squeeze(-1)) / BAND_WEIGHT_SCALE


class TriPlaneField(nn.Module):
    def __init__(self, config: FieldConfig, bounds: torch.Tensor, time_range: tuple[float, float]):
        super().__init__()
        self.config = config
        bounds = torch.tensor(np.asarray(bounds, dtype=np.float32)).reshape(2, 3)
        self.register_buffer("bounds", bounds)
        self.time_range = (float(time_range[0]), float(time_range[1]))
        r, c = config.resolution, config.channels
        # Products of three planes start near 1 · 1 · 1, plus a little noise to break ties.
        self.canonical = nn.ParameterDict(
            {p: nn.Parameter(1.0 + 0.1 * torch.randn(c, r, r)) for p in PLANES}
        )
        cd, steps = config.deform_channels, config.time_steps
        self.deformation = nn.ParameterDict(
            {p: nn.Parameter(torch.zeros(cd, steps, r, r)) for p in PLANES}
        )
        self.offset = nn.Linear(cd, 3)  # Δx = W·f + b: linear, no MLP
        # Planes start at zero (Δx = 0 everywhere); W must not, or the product W·f has
        # no gradient to start from in either factor.
        nn.init.normal_(self.offset.weight, std=0.3)
        nn.init.zeros_(self.offset.bias)
        sh = (config.sh_degree + 1) ** 2
        self.decoder = nn.Sequential(
            nn.Linear(c, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1 + 3 * sh)
        )
        self.head = ShadeHead(config.sh_degree, config.band_dim)
        sh = (config.sh_degree + 1) ** 2  # band l of SH coefficient i is floor(sqrt(i))
        bands = torch.tensor([math.isqrt(i) for i in range(sh)])
        self.register_buffer("band_of", bands, persistent=False)

    # ---- coordinates ---------------------------------------------------------------
    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        return 2.0 * (points - low) / (high - low) - 1.0

    def normalise_time(self, t: torch.Tensor) -> torch.Tensor:
        start, end = self.time_range
        return (2.0 * (t - start) / max(end - start, 1e-6) - 1.0).clamp(-1.0, 1.0)

    # ---- the field -------------------------------------------------------------------
    def displacement(self, unit: torch.Tensor, tn: torch.Tensor) -> torch.Tensor:
        """Δx in normalised coordinates for points (N, 3) in [−1, 1]³ at times tn (N,)."""
        if _one_time(tn):
            return self._displacement_at(unit, tn[:1])
        times, group = torch.unique(tn, return_inverse=True)
        if len(times) <= FEW_TIMES:  # a few frames' rays: a 2-D lookup per frame
            shifted = unit.new_zeros(len(unit), 3)
            for index, time_n in enumerate(times):
                members = (group == index).nonzero().squeeze(1)
                shifted[members] = self._displacement_at(unit[members], time_n[None])
            return shifted
        total = 0.0  # one call per volume: stacking them would copy every slice
        for volume, (a, b) in zip(self._volumes(), AXES.values(), strict=True):
            grid = torch.stack([unit[:, a], unit[:, b], tn], -1).view(1, -1, 1, 1, 3)
            sampled = F.grid_sample(volume[None], grid, align_corners=True)  # W=u, H=v, D=t
            total = total + sampled.view(volume.shape[0], -1)
        return self.offset(total.T)

    def _displacement_at(self, unit: torch.Tensor, tn: torch.Tensor) -> torch.Tensor:
        """`displacement` when every point shares the time tn (1,): each volume is cut at
        that time first (linear between its two nearest slices, as the trilinear sample
        would), then sampled bilinearly: a 2-D lookup in place of a 3-D one, same values."""
        steps = self.config.time_steps
        position = (tn + 1.0) * 0.5 * (steps - 1)
        lower = position.floor().clamp(0, max(steps - 2, 0)).long()
        upper = (lower + 1).clamp(max=steps - 1)
        weight = (position - lower).clamp(0.0, 1.0)
        cuts = torch.stack(  # (3, Cd, R, R): cut first, so only the cuts are copied
            [torch.lerp(v[:, lower[0]], v[:, upper[0]], weight[0]) for v in self._volumes()]
        )
        sampled = F.grid_sample(cuts, _plane_grids(unit), align_corners=True)
        return self.offset(sampled.view(3, cuts.shape[1], -1).sum(0).T)

    def _volumes(self) -> list[torch.Tensor]:
        return [self.deformation[p] for p in PLANES]

    def band_weights(self, tn: torch.Tensor) -> torch.Tensor:
        """The SHaDe head's band weights (N, L+1), computed once when all share a time."""
        if _one_time(tn):
            return self.head(tn[:1]).expand(len(tn), -1)
        return self.head(tn)

    def features(self, unit: torch.Tensor) -> torch.Tensor:
        planes = torch.stack([self.canonical[p] for p in PLANES])  # (3, C, R, R)
        sampled = F.grid_sample(planes, _plane_grids(unit), align_corners=True)
        sampled = sampled.view(3, self.config.channels, -1)
        return (sampled[0] * sampled[1] * sampled[2]).T  # (N, C)

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """points (N, 3) world, unit directions (N, 3), times (N,) → σ (N,), rgb (N, 3)."""
        unit, tn = self.normalise(points), self.normalise_time(t)
        if self.config.deform:
            unit = unit + self.displacement(unit, tn)
        out = self.decoder(self.features(unit))
        sigma = F.softplus(out[:, 0] - 1.0)
        sh = (self.config.sh_degree + 1) ** 2
        coefficients = out[:, 1:].view(-1, 3, sh)
        weights = self.band_weights(tn)  # (N, L+1)
        basis = sh_basis(directions, self.config.sh_degree) * weights[:, self.band_of]  # (N, sh)
        rgb = torch.sigmoid((coefficients * basis[:, None, :]).sum(-1))
        return sigma, rgb

    def density_and_base_colour(
        self, points: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """σ and the view-independent colour (the SH degree-0 band alone)."""
        unit, tn = self.normalise(points), self.normalise_time(t)
        if self.config.deform:
            unit = unit + self.displacement(unit, tn)
        out = self.decoder(self.features(unit))
        sh = (self.config.sh_degree + 1) ** 2
        band = self.band_weights(tn)[:, :1]
        dc = out[:, 1:].view(-1, 3, sh)[:, :, 0] * 0.28209479177387814 * band
        return F.softplus(out[:, 0] - 1.0), torch.sigmoid(dc)


@torch.no_grad()
def grid_density(
    field: TriPlaneField, resolution: int, time: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The field on a regular grid over its bounds (`resolution` points per axis, corners
    included) at one time: points (G³, 3), σ (G³,) and view-independent colour (G³, 3),
    on the CPU, evaluated 65,536 points at a time."""
    low, high = field.bounds.cpu()
    axes = [torch.linspace(float(low[i]), float(high[i]), resolution) for i in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sigmas, rgbs = [], []
    for chunk in grid.split(65536):
        chunk = chunk.to(field.bounds.device)
        times = torch.full((len(chunk),), float(time), device=chunk.device)
        sigma, rgb = field.density_and_base_colour(chunk, times)
        sigmas.append(sigma.cpu())
        rgbs.append(rgb.cpu())
    return grid, torch.cat(sigmas), torch.cat(rgbs)
