"""The image-policy benchmark's keys, rows and target notes, from given evaluation results."""

from __future__ import annotations

from benchmarks.policy_image import _result
from policies.diffusion.configuration import DiffusionConfig
from tests.benchmarks.test_policy import _eval


def test_panda_rows_sit_beside_the_low_dim_ones_with_the_task_in_every_key() -> None:
    results = {
        "panda-pickplace": {
            "ddpm100": _eval(0.92, 1200.0),
            "ddim10": _eval(0.98, 140.0),
            "rti": _eval(1.00, 37.0),
        }
    }
    times = {"encoder": 3.0, "unet": 10.0, "onnx_separate": 20.0, "onnx_fused": 19.0}
    config = DiffusionConfig(obs_dim=11, action_dim=4, task="panda-pickplace")
    lowdim = {  # as bench policy records a Panda task: the task, hyphen included, in the key
        "success_rti_panda-pickplace": 0.95,
        "success_low_rti_panda-pickplace": 0.89,
        "success_high_rti_panda-pickplace": 0.98,
        "latency_p50_ms_rti_panda-pickplace": 18.0,
    }
    out = _result(results, {"panda-pickplace": times}, {"panda-pickplace": config}, {}, lowdim)
    figures = out.figures
    assert figures["success_rti_image_panda-pickplace"] == 1.00
    assert figures["latency_p50_ms_ddpm100_image_panda-pickplace"] == 1200.0
    assert figures["success_rti_image_pusht"] is None  # not evaluated: null, not absent
    rows = [row for row in out.table[1:] if row[0] == "panda-pickplace"]
    assert [row[1] for row in rows] == ["image", "image", "image", "state (bench policy)"]
    assert rows[-1][4] == "0.95 [0.89, 0.98]" and rows[-1][5] == "18.0"
    assert (
        "panda-pickplace from images: RTI within 3 points of DDPM-100: +0.08 (met)"
        in (out.notes[0])
    )
