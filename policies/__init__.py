"""Diffusion policies with the Real-Time Iteration warm start (built in issue #5)."""
