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

# The Panda pick-and-place + the image RTI policy on onnxruntime + a recorder, over
# ZeroMQ; outputs in runs/manipulation/ (without --obs image: the low-dim policy).
demo: $(STAMP)
	$(VENV)/bin/warmloop demo manipulation --obs image

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two workers, one file each at a time (module fixtures stay whole), one math thread
# each: the suite waits on sockets, real-time ticks and child processes for much of
# its time, so two share a 2-core machine; with torch's thread per core each, they
# oversubscribed it (2026-12-03, AMD EPYC: 9 min 43 s serial, 9 min 0 s that way,
# 7 min 57 s with one thread each). Tests that train pass `--threads 1` for the same
# reason (training defaults to every core): 9 min 6 s -> 6 min 2 s on 2026-12-04.
test: lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
