"""Viewers (Open3D), plots and videos."""
