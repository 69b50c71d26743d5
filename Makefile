# Two commands: `make demo` (the main job) and `make test` (every test). Each bootstraps .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned here; pyproject.toml keeps a compatible range. It comes from PyTorch's CPU wheel index (the CPU
# build, no CUDA packages) where this machine reaches it within 3 s, else from the configured package index
# (scripts/torch_index.py). TORCH_INDEX=none takes the plain pin, TORCH_INDEX=URL that index; TORCH_CPU_INDEX is
# the CPU index that auto tries (a mirror of it may stand in).
TORCH  := torch==2.13.0
TORCH_INDEX ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
export OMP_NUM_THREADS ?= 1
export SEQDIFF_THREADS ?= 1

.PHONY: demo test test-fast test-portable lab app bench bench-peers clean-venv

LABEXT := $(VENV)/share/jupyter/labextensions/seqdiff-kit-reload

$(STAMP): pyproject.toml labextension/package.json labextension/static/remoteEntry.js
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	args=$$($(PY) scripts/torch_index.py $(TORCH_INDEX) --cpu-index $(TORCH_CPU_INDEX)) && $(PY) -m pip install --quiet $(TORCH) $$args
	$(PY) -m pip install --quiet -e ".[test,lab,teach]"
	# an editable install skips pyproject's data-files: copy the JupyterLab extension that redraws widgets a
	# reloaded page lost to a race (labextension/, see docs/architecture.md) where JupyterLab looks (a copy,
	# not a link: Voila refuses to serve a file whose real path is outside that folder)
	rm -rf $(LABEXT) && mkdir -p $(LABEXT) && cp -R labextension/. $(LABEXT)
	# nbgrader's JupyterLab and server extensions off: the course is made with its command line, and JupyterLab
	# (and its browser tests) should look as they do without the teach extra
	$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader @jupyter-notebook/lab-extension
	$(VENV)/bin/jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader \
		nbgrader.server_extensions.assignment_list nbgrader.server_extensions.course_list \
		nbgrader.server_extensions.validate_assignment
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seqdiff demo

# The tests run on TEST_WORKERS processes (pytest-xdist), one test file at a time each (--dist loadfile): a notebook's
# cells run in order in one kernel, and a module's fixtures (a JupyterLab server, a Dask cluster) start once. In
# collection order (--no-loadscope-reorder), so the browser files, the longest, start first. Each process keeps
# one torch thread (OMP_NUM_THREADS, SEQDIFF_THREADS above). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# every test: unit and analytic tests, the notebooks under strict nbval (fast path), the browser tests
test: $(STAMP)
	SEQDIFF_FAST=1 $(PY) -m pytest -ra $(XDIST) --nbval --nbval-current-env --nbval-cell-timeout=120 tests notebooks

test-fast: $(STAMP)
	$(PY) -m pytest -ra $(XDIST) -m "not slow"

# the fast suite on ATen's plain (non-SIMD) kernels: catches tests that hold only on one instruction set
test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q $(XDIST) -m "not slow" -p no:cacheprovider tests --ignore=tests/browser

# JupyterLab refuses to start as root unless told --allow-root. In a container or a classroom image root is the
# usual (often the only) user, so `make lab` adds the flag exactly when it runs as root (LAB_UID 0).
# LAB_IP stays 127.0.0.1 (this machine only); in a container whose port is published to the host
# (`docker run -p 8888:8888 ...`), `make lab LAB_IP=0.0.0.0` makes it reachable; the token still guards it.
LAB_UID  ?= $(shell id -u)
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(LAB_UID)),--allow-root)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip=$(LAB_IP) --port=$(LAB_PORT) --notebook-dir=notebooks $(LAB_ROOT) $(LAB_ARGS)

# the no-code explorer for a classroom projector: app/explorer.ipynb served by Voila on 127.0.0.1 only, behind a
# token (open the address it prints); no code on the page. Its template (app/voila/templates/explorer, found through
# JUPYTER_PATH) is Voila's lab one without the icon font it would fetch from a CDN: the page works offline. Voila
# has no --allow-root flag (it is not a Jupyter server app) and runs as root without one.
app: $(STAMP)
	JUPYTER_PATH=$(CURDIR)/app$${JUPYTER_PATH:+:$$JUPYTER_PATH} $(VENV)/bin/voila app/explorer.ipynb --template=explorer --no-browser --Voila.ip=127.0.0.1 --token

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# the peer that benchmarks/bench_quality_per_second.py races: without its declared dependencies (accelerate and
# torchvision, which would replace the pinned torch; the benchmark stands in for the two calls it makes)
bench-peers: $(STAMP)
	$(PY) -m pip install --quiet --no-deps smalldiffusion==0.5.0

clean-venv:
	rm -rf $(VENV)
