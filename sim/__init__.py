"""MuJoCo scenes as gymnasium environments, experts, datasets, the sim node (issue #4)."""
