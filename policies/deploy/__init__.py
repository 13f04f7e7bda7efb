"""Deploying a trained policy: ONNX export, and a runtime that needs no torch."""
