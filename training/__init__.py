"""Training machinery shared by the diffusion policies and the world generator.

`loop` (optimiser steps, schedules, EMA, DDP, device), `checkpoint` (safetensors + JSON
with a weights hash) and `json_file` (torch-free). Imports nothing else of warmloop.
"""
