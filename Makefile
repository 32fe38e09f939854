# locod: `make run` runs the daemon on the default configuration, `make test` runs every test.
# Both do their own set-up (the Python environment with libtorch, Debian packages) and are fast
# when it is already done.
#
# libtorch comes from the PyTorch wheel in the project's environment (.venv). To build against
# your own libtorch instead (e.g. NVIDIA's build on a Jetson), set LIBTORCH=/path/to/libtorch.

SHELL := /bin/bash
CONFIG ?= config/sim.toml
CARGO ?= cargo
VENV := $(CURDIR)/.venv

export PATH := $(VENV)/bin:$(PATH)
export VIRTUAL_ENV := $(VENV)
ifndef LIBTORCH
export LIBTORCH_USE_PYTORCH := 1
endif
export LOCOD_FUZZ_CASES ?= 256

.PHONY: run test bench build install setup setup-python models models-smoke test-models adapt lint clean

# The simulator (locod sim) and the daemon as two processes that only share the pseudo-terminals
# named in $(CONFIG): the daemon starts once the simulator has linked them; Ctrl-C stops the daemon
# (it damps first, the simulated motors still answering), then the simulator (scripts/run-sim.sh).
run: setup-python
	./scripts/setup-system.sh build
	$(CARGO) build --release --bin locod
	@echo "locod: simulator + daemon on $(CONFIG): the simulator's lines start 'locod: sim:'; Ctrl-C stops both"
	@./scripts/run-sim.sh $(CONFIG) --goal walk

test: setup-python test-models models-smoke
	./scripts/setup-system.sh build test
	./scripts/qemu-can/setup.sh
	$(CARGO) build --workspace --all-targets
	$(CARGO) build --release --bin locod
	LOCOD_REQUIRE_QEMU=1 $(CARGO) test --workspace --no-fail-fast

bench: setup-python
	./scripts/setup-system.sh build bench
	$(CARGO) build --release --bin locod
	./target/release/locod bench loop --config config/biwheel.toml --seconds 30 --json
	./target/release/locod bench io --config config/biwheel.toml --json
	./target/release/locod bench log --config config/biwheel.toml --seconds 10 --json

lint: setup-python
	./scripts/setup-system.sh build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: setup-python
	./scripts/setup-system.sh build
	$(CARGO) build --release --bin locod

# A self-contained tree for a robot: `make install PREFIX=/opt/locod` (DESTDIR for staging).
# The robot build leaves the simulator out (no MuJoCo) and finds libtorch in PREFIX/lib, where
# scripts/install.sh copies it; systemd/README.md walks through the rest. The robot build is a
# second build of the locod crate only (its dependencies are shared); target/release/locod is the
# development build again afterwards.
PREFIX ?= /opt/locod
DESTDIR ?=
install: setup-python
	./scripts/setup-system.sh build
	LOCOD_RPATH='$$ORIGIN/../lib' $(CARGO) build --release --no-default-features --bin locod
	./scripts/install.sh target/release/locod "$(PREFIX)" "$(DESTDIR)"
	$(CARGO) build --release --bin locod

setup: setup-python
setup-python:
	@./scripts/setup-python.sh

# The trained models of the example robot (models/biwheel/): teacher, DynaWM and plain students,
# world model, exports, model cards and the evaluation table; resumable, a log in models/runs/.
# NPROC=2 runs each stage under torchrun; DEVICE=cuda uses a GPU.
NPROC ?= 1
DEVICE ?= cpu
models: setup-python
	cd models && PYTHONPATH=. $(VENV)/bin/python -m locod_train.pipeline --nproc $(NPROC) --device $(DEVICE)

# The SimDist adaptation experiment in sim2sim: MPPI with the trained world model collects data on
# the slippery ramp of `locod eval --real-world`, `locod finetune` adapts its dynamics at several
# data budgets, every model is evaluated on the ramp, the foam floor and the flat floor beside the
# student cloned on the same data, and a probe on held-out episodes says why the plans did or did
# not change (scripts/adapt.sh; BUDGETS, SCENES, EPISODES, BC_BUDGETS, COLLECT_SCENE override).
# Resumable; results in models/runs/adapt/ (table.md, adapt.png, probe.txt). This release's are in
# models/biwheel/adapt_ramp/ and adapt_ramp2/ (the ramp) and adapt/, adapt_h16/ (data from the foam).
adapt: build
	COLLECT_SCENE=$${COLLECT_SCENE:-slope} SCENES="$${SCENES:-slope:forward soft:forward flat:random}" \
		./scripts/adapt.sh config/sim-mppi.toml models/runs/adapt

# The whole pipeline in miniature (tiny networks, 2 processes) and the training code's own tests,
# including the golden observation test against locod's observation builder's fixture.
models-smoke: setup-python
	cd models && PYTHONPATH=. $(VENV)/bin/python -m unittest discover -s tests -t . -v
	cd models && PYTHONPATH=. $(VENV)/bin/python -m locod_train.pipeline --smoke

# The small random-weight TorchScript models the policy tests and benchmarks use, rebuilt when
# their script changes.
TEST_MODELS := models/build/.built
test-models: setup-python $(TEST_MODELS)
$(TEST_MODELS): models/make_test_models.py models/requirements.txt
	$(VENV)/bin/python models/make_test_models.py --out models/build
	@touch $@

clean:
	$(CARGO) clean
