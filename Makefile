# Two commands set up a fresh machine and run warmloop: `make demo` and `make test`.
# The environment is rebuilt only when pyproject.toml changes (a stamp keyed on its hash).
VENV  := .venv
HASH  := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.stamp-$(HASH)
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(STAMP)

# The Panda pick-and-place + the RTI policy on onnxruntime + a recorder, over ZeroMQ;
# outputs in runs/manipulation/ (--task pickplace: the mocap gripper, as before).
demo: $(STAMP)
	$(VENV)/bin/warmloop demo manipulation

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
