"""warmloop: a real-time runtime for warm-started diffusion policies and 4D world models.

This package is the application layer: the `warmloop` command (`warmloop/cli.py`) and
the demos. The capabilities live in streams, runtime, training, sim, policies, world
and viz (docs/architecture.md).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("warmloop")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
