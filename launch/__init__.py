"""Launch graphs: YAML files, installed as the package `warmloop_launch` (data, not code)."""
