"""Diffusion Policy (Chi et al., RSS 2023) with the Real-Time Iteration warm start."""
