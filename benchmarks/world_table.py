"""The tables and notes `bench world` writes into docs/benchmarks.md, from its figures."""

from __future__ import annotations

ROWS = (
    ("copy", "copy frame 0"),
    ("warp_start", "depth-warp of frame 0"),
    ("warp_recent", "depth-warp of frame 0 + the last warped frame"),
    ("memory_render", "memory render alone (the student's guidance)"),
    ("student_guided", "student, guided (warp + memory)"),
    ("student_geometry", "student, warp only (no memory)"),
    ("student_unguided", "student, unguided"),
    ("teacher_guided", "teacher, guided (warp + memory)"),
    ("teacher_geometry", "teacher, warp only"),
    ("teacher_unguided", "teacher, unguided"),
    ("teacher_cut_guided", "teacher cut to the student's steps, guided"),
    ("teacher_cut_geometry", "teacher cut to the student's steps, warp only"),
    ("teacher_cut_unguided", "teacher cut to the student's steps, unguided"),
    ("student_guided_1_thread", "student, guided, seed 0 at 1 torch thread"),
)


def _spread(f: dict, key: str) -> str:
    value = f"{f[f'{key}_psnr']:.2f}"
    low, high = f.get(f"{key}_psnr_min"), f.get(f"{key}_psnr_max")
    return value if low is None or low == high else f"{value} ({low:.2f}–{high:.2f})"


def table(f: dict) -> list[list[str]]:
    """Fidelity against the simulator: the classical rows first, then the generators."""
    rows = [
        [
            "method (only frame 0 is true)",
            "PSNR (seeds min–max)",
            "SSIM",
            "PSNR co-visible",
            "PSNR disoccluded",
            "PSNR small / large motion",
            "sharpness",
        ]
    ]
    for key, label in ROWS:
        key = f"truth_{key}"
        if f"{key}_psnr" not in f:
            continue
        rows.append(
            [
                label,
                _spread(f, key),
                f"{f[f'{key}_ssim']:.3f}",
                f"{f[f'{key}_psnr_covisible']:.2f}",
                f"{f[f'{key}_psnr_disoccluded']:.2f}",
                f"{f.get(f'{key}_psnr_small_motion', float('nan')):.2f} / "
                f"{f.get(f'{key}_psnr_large_motion', float('nan')):.2f}",
                f"{f[f'{key}_sharpness']:.2f}",
            ]
        )
    return rows


def loop_table(f: dict) -> list[list[str]]:
    """Speed, revisits and drift."""
    gap = f"{f['frame_gap_p50_ms_student']:.1f} / {f['frame_gap_p99_ms_student']:.1f}"
    return [
        ["measure", "value", "target"],
        [f"student FPS, 64x64 ({f['student_steps']} steps)", f"{f['fps_student_64']:.1f}", ">= 10"],
        [f"teacher FPS, 64x64 ({f['teacher_steps']} steps)", f"{f['fps_teacher_64']:.1f}", ""],
        [
            f"teacher cut to {f['student_steps']} steps, FPS",
            f"{f['fps_teacher_at_student_steps']:.1f}",
            "",
        ],
        ["student / teacher speed", f"{f['student_speedup']:.1f}x", ""],
        ["first-frame latency, student (ms)", f"{f['first_frame_latency_ms']:.0f}", "<= 400"],
        ["first-frame latency, teacher (ms)", f"{f['first_frame_latency_ms_teacher']:.0f}", ""],
        ["gap between released frames p50 / p99, student (ms)", gap, ""],
        [
            "of which the geometry warp, per frame (ms)",
            f"{f.get('warp_ms_per_frame_student', float('nan')):.1f}",
            "",
        ],
        [
            "revisit PSNR vs truth, student guided / unguided (dB)",
            f"{f['revisit_psnr_truth_guided']:.2f} / {f['revisit_psnr_truth_unguided']:.2f}",
            "guided - unguided >= 3",
        ],
        [
            "revisit PSNR vs truth, student with the warp and no memory (dB)",
            f"{f.get('revisit_psnr_truth_geometry', float('nan')):.2f}",
            "",
        ],
        [
            "revisit PSNR vs truth, baselines: frame 0 warped there / shown again (dB)",
            f"{f['revisit_psnr_truth_warp_start']:.2f} / {f['revisit_psnr_truth_copy_start']:.2f}",
            "guided >= warp - 1",
        ],
        [
            "self-consistency: revisit vs first visit, guided / unguided (dB)",
            f"{f['self_consistency_psnr_guided']:.2f} / {f['self_consistency_psnr_unguided']:.2f}",
            "secondary",
        ],
        [
            f"drift slope (MSE per segment over {f.get('drift_segments', 8)} segments), "
            "MMPL / framewise",
            f"{f['drift_slope_mmpl']:.5f} / {f['drift_slope_framewise']:.5f}",
            "MMPL <= 0.7x",
        ],
        *_end_of_path(f),
    ]


def _end_of_path(f: dict) -> list[list[str]]:
    if "drift_psnr_last_segment_mmpl" not in f:  # recorded before these figures existed
        return []
    seconds = f["drift_segments"] * 0.8
    return [
        [
            f"PSNR vs truth, last segment of the {seconds:.0f} s path, MMPL / framewise (dB)",
            f"{f['drift_psnr_last_segment_mmpl']:.2f} / "
            f"{f['drift_psnr_last_segment_framewise']:.2f}",
            ">= 20",
        ],
        [
            "PSNR vs truth, worst segment of that path, MMPL / framewise (dB)",
            f"{f['drift_psnr_worst_segment_mmpl']:.2f} / "
            f"{f['drift_psnr_worst_segment_framewise']:.2f}",
            "",
        ],
    ]


def notes(f: dict, names: dict[str, str]) -> list[str]:
    warp = "truth_warp_start"
    lines = []
    for row, label in (("student_geometry", "warp only"), ("student_guided", "warp + memory")):
        key = f"truth_{row}"
        if f"{key}_psnr" not in f:
            continue
        lines.append(
            f"**Against the simulator, the student ({label}) scores {f[f'{key}_psnr']:.2f} "
            f"dB where frame 0 depth-warped into the target camera scores "
            f"{f[f'{warp}_psnr']:.2f}** (co-visible pixels {f[f'{key}_psnr_covisible']:.2f} "
            f"vs {f[f'{warp}_psnr_covisible']:.2f}; disoccluded "
            f"{f[f'{key}_psnr_disoccluded']:.2f} vs {f[f'{warp}_psnr_disoccluded']:.2f})."
        )
    return [
        *lines,
        "Targets (issue #26): co-visible >= warp - 0.5 dB, whole frame >= warp + 1 dB.",
        f"Fidelity path: {f['truth_targets']} generated frames of one random walk "
        f"({f['truth_small_motion_targets']} within 0.5 m and 20 degrees of frame 0, "
        f"{f['truth_large_motion_targets']} beyond; {100 * f['truth_covisible_fraction']:.0f}% "
        "of target pixels co-visible with frame 0). Guided rows use a memory fitted on frame 0 "
        "and the generated frames only, as the loop has it. Whole-frame PSNR is the mean over "
        f"frames (the student's rows: min–max of the per-seed means over {f['runs']} seeds; "
        "the teacher's rows: one seed); the co-visible and disoccluded columns pool the "
        "squared error over all their pixels. Sharpness: high-frequency energy relative to "
        "the truth frame (1 = as sharp; blur lowers it, nearest-fill blocks raise it).",
        f"Revisit: {f['revisit_pairs']} frame pairs at equal poses on `excursion` paths that "
        "go more than 1 m and 45 degrees away in between, none of them frame 0's pixels "
        f"again. Guidance changes PSNR against the truth by {f['revisit_gain_truth_db']:+.2f} "
        f"dB (target +3); against the frame generated on the first visit (self-consistency, "
        f"which the memory was fitted on) it gains {f['self_consistency_gain_db']:+.2f} dB: "
        "repeatable is not right.",
        "The memory's render reaches the generator only where the field renders its anchor "
        "(frame 0) and agrees with the target's warp (world/generation/memory.py): it did on "
        f"{f.get('truth_memory_guided_targets', 'nan')} of the fidelity path's guided targets "
        f"(student, seed 0; withheld on {f.get('truth_memory_withheld_targets', 'nan')}) "
        f"and on {f.get('revisit_memory_guided_targets', 'nan')} of the revisit paths' "
        f"(withheld on {f.get('revisit_memory_withheld_targets', 'nan')}).",
        "Speed excludes fitting (a reconstruction node does that in its own process); "
        "it includes rendering guidance from a tri-plane memory at 32x32.",
        f"Plot: [{names['plot']}](img/{names['plot']}); revisit strip (truth | first visit | "
        f"revisit guided | revisit unguided): [{names['strip']}](img/{names['strip']}).",
    ]
