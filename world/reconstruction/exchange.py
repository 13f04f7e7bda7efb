"""A field to and from the TriPlanes message, and to a coloured point cloud.

The message carries the planes as float16 (half the bytes; well inside the precision
the fit reaches) and every other weight as float32 in `decoder`, so a receiver
rebuilds the very field the sender renders. `decoder["flags"]` holds [sh_degree,
deform].
"""

from __future__ import annotations

import numpy as np
import torch

from streams import PointCloud, TriPlanes
from world.reconstruction.field import PLANES, FieldConfig, TriPlaneField, grid_density


def to_message(field: TriPlaneField, plane_dtype: type = np.float16) -> TriPlanes:
    def array(tensor: torch.Tensor, dtype: type = np.float32) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(dtype)

    network = {
        name: array(value)
        for name, value in field.state_dict().items()
        if not name.startswith(("canonical.", "deformation.", "bounds"))
    }
    network["flags"] = np.array([field.config.sh_degree, float(field.config.deform)], np.float32)
    return TriPlanes(
        canonical={p: array(field.canonical[p], plane_dtype) for p in PLANES},
        # The message's layout is [T, C, R, R]; the field keeps [C, T, R, R] for grid_sample.
        deformation={p: array(field.deformation[p].transpose(0, 1), plane_dtype) for p in PLANES},
        decoder=network,
        bounds=array(field.bounds),
        t_start=field.time_range[0],
        t_end=field.time_range[1],
    )


def from_message(message: TriPlanes, device: str = "cpu") -> TriPlaneField:
    """Rebuild the field; raises ValueError when the message's parts do not fit together."""
    canonical, deformation, network = message.canonical, message.deformation, message.decoder
    try:
        channels, resolution, _ = canonical["xy"].shape
        steps, deform_channels = deformation["xy"].shape[:2]
        sh_degree, deform = (int(v) for v in network["flags"])
        config = FieldConfig(
            resolution=resolution,
            channels=channels,
            deform_channels=deform_channels,
            time_steps=steps,
            sh_degree=sh_degree,
            hidden=network["decoder.0.weight"].shape[0],
            band_dim=network["head.bands"].shape[1],
            deform=bool(deform),
        )
        field = TriPlaneField(config, message.bounds, (message.t_start, message.t_end))
        state = {
            k: torch.tensor(np.asarray(v, np.float32)) for k, v in network.items() if k != "flags"
        }
        for p in PLANES:
            state[f"canonical.{p}"] = torch.from_numpy(canonical[p].astype(np.float32))
            state[f"deformation.{p}"] = torch.from_numpy(
                deformation[p].astype(np.float32)
            ).transpose(0, 1)
        state["bounds"] = torch.tensor(np.asarray(message.bounds, np.float32))
        field.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(f"TriPlanes message does not describe a field: {exc}") from None
    return field.to(device)


AUTO_QUANTILE = 90.0  # a room is mostly free space: its surfaces are the densest tenth
AUTO_FLOOR = 0.5  # and never the faint haze of a field that has barely started


def point_cloud(
    field: TriPlaneField, time: float, resolution: int = 64, threshold: float | None = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) on a grid where density exceeds `threshold`, and their colours in [0, 1].

    `threshold` None picks one from the field: the AUTO_QUANTILE percentile of the grid's
    densities, at least AUTO_FLOOR. A fixed number that suits a well-fitted field shows
    nothing of one a few hundred steps old, whose walls are still faint.
    A colour is the field's view-independent part (the SH degree-0 band): directions
    never observed would otherwise extrapolate.
    """
    grid, sigma, rgb = grid_density(field, resolution, time)
    if threshold is None:
        # >= below: cells a young field has not told apart share one density, and a
        # strict > at a percentile on such a plateau would drop all of them.
        auto = max(AUTO_FLOOR, float(np.percentile(sigma.numpy(), AUTO_QUANTILE)))
        keep = sigma >= auto
    else:
        keep = sigma > threshold
    return grid[keep].numpy(), rgb[keep].numpy()


def point_cloud_message(field: TriPlaneField, time: float, resolution: int) -> PointCloud:
    """`point_cloud` at the automatic threshold, as the PointCloud message viewers take."""
    points, colours = point_cloud(field, time, resolution, None)
    rgb = np.clip(np.rint(colours * 255), 0, 255).astype(np.uint8)
    return PointCloud(points=points.astype(np.float32), colours=rgb, scene_time=float(time))
