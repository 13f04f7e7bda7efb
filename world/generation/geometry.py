"""What geometry already knows about a target frame: known frames depth-warped into it.

The generator is conditioned on this (issue #26): a world model that has seen an RGB-D
frame can show most of the next one by reprojection (world/warp.py), which beat every
learned generator against the simulator's truth. So the network is handed the warp,
aligned to the target camera, and predicts a residual over it: little where the warp
is right, everything where nothing landed.

Frames carry a confidence. True observations (the start frame) are anchors: where an
anchor lands, generated frames cannot overwrite it, so a revisit shows what was seen.
Generated frames fill only what no anchor covered. The mask channel says which:

    1.0  an anchor landed here          (the truth, reprojected)
    0.5  only a generated frame landed  (the loop's own guess, reprojected)
    0.0  nothing landed                 (nearest-filled: the network must inpaint)
"""

from __future__ import annotations

import numpy as np

from world.generation.generator import from_model, to_model
from world.warp import View, Warped, depth_warp, nearest_fill

ANCHORED, GENERATED = 1.0, 0.5  # mask values, see above


def view_of(frame: np.ndarray, pose: np.ndarray) -> View:
    """A model-space frame (4, H, W) as a View for warping."""
    rgb, depth = from_model(frame)
    return View(rgb, depth, np.asarray(pose))


def anchored_warp(
    anchors: list[View],
    generated: list[View],
    intrinsics: np.ndarray,
    pose: np.ndarray,
    size: int,
) -> np.ndarray:
    """(5, H, W) float32: the warp in model space (RGB-D, holes nearest-filled) and its
    confidence mask; all zeros when there is nothing to warp."""
    layers = [
        (depth_warp(views, intrinsics, pose, size, size, fill=False), value)
        for views, value in ((anchors, ANCHORED), (generated, GENERATED))
        if views
    ]
    if not layers:
        return np.zeros((5, size, size), np.float32)
    rgb = np.zeros((size, size, 3), np.uint8)
    depth = np.full((size, size), np.inf, np.float32)
    mask = np.zeros((size, size), np.float32)
    for warped, value in reversed(layers):  # anchors last: they win where they landed
        rgb[warped.landed] = warped.rgb[warped.landed]
        depth[warped.landed] = warped.depth[warped.landed]
        mask[warped.landed] = value
    filled = nearest_fill(Warped(rgb, depth, mask > 0))
    return np.concatenate([to_model(filled.rgb, filled.depth), mask[None]], 0)
