# zk0 — one entry point for people and CI. `make test` and `make demo` set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON312 ?= $(shell scripts/find-python.sh)
VENV      := .venv
PY        := $(VENV)/bin/python
UV        := $(VENV)/bin/uv
export FLWR_TELEMETRY_ENABLED := 0
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
# The version is written once, in pyproject.toml (scripts/build-image.sh reads it the same way).
ZK0_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)

.PHONY: help setup test test-unit test-integration coverage-report bench sim sim-stop demo lint lock clean

help:  ## list targets
	@grep -hE '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; \
	    $(PY) -m pip install -q --disable-pip-version-check uv==0.13.8; }
	$(UV) pip sync -q -p $(PY) requirements/lock.txt
	$(UV) pip install -q -p $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv with the locked dependencies and zk0

lock:  ## re-resolve requirements/lock.txt from pyproject.toml
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.12 \
	    --python-platform x86_64-manylinux_2_28 -o requirements/lock.txt

# A+B runs A and B side by side, A,B+C runs A then B beside C (scripts/test-tiers.sh). The
# simulation tiers run alone (Ray's start-up is what a busy CPU breaks). Then two lanes of
# about an hour's work each: the loopback deployment tests, the image tests and Molecule; beside
# them the image build, the lab's registry push and the lab (the longest tier: it starts as soon
# as its images are in the registry). Most of the second lane waits on Docker (pulls, loads,
# health checks), not on the CPU.
TIERS := lint test-unit test-integration coverage-report \
    systemd-image,test-deploy,test-image,test-roles+image,lab-prepare,test-lab
test:  ## every test tier in order (what CI runs), with each tier's seconds at the end
	scripts/test-tiers.sh $(TIERS)

# Coverage of zk0/ ([tool.coverage] in pyproject.toml, subprocesses included): test-unit starts
# the data file (.coverage), test-integration adds to it, coverage-report totals both.
COVERAGE_FLOOR := 80
COV := --cov --cov-report=
# The slowest tests of each tier in the log: where the CI minutes go.
DURATIONS := --durations=10

test-unit: setup lab-tools monitoring-tools  ## pure logic, seconds (ssh: zk0bot's tunnel test; promtool: the alert rules)
	$(PY) -m pytest tests/unit $(COV) $(DURATIONS)

test-integration: setup setup-ops proxy-tools  ## real Flower simulation with the tiny SmolVLA; zk0bot against loopback
	$(PY) -m pytest tests/integration --ignore=tests/integration/deploy $(COV) --cov-append $(DURATIONS)

coverage-report: setup  ## zk0/ coverage per module of the unit and integration tiers; fails under COVERAGE_FLOOR %
	$(PY) -m coverage report --sort=cover --fail-under=$(COVERAGE_FLOOR)

test-deploy: setup proxy-tools  ## loopback deployment behind the edge proxy: TLS, node auth, the outsider, faults, rejections
	$(PY) -m pytest tests/integration/deploy $(DURATIONS)

.PHONY: proxy-tools monitoring-tools
# promtool checks the monitoring role's rules (tests/unit/test_monitoring_role.py). On a host that
# runs systemd the package also starts a Prometheus (Debian's defaults; this CI machine has no systemd).
monitoring-tools:
	@command -v promtool >/dev/null || { \
	    echo "installing prometheus (for promtool)"; \
	    scripts/apt-install.sh prometheus; }

proxy-tools:  ## Debian's nginx-light: the edge proxy the loopback federation runs in front of the SuperLink
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	    echo "installing nginx-light (the edge proxy)"; \
	    scripts/apt-install.sh nginx-light; }

bench: setup proxy-tools  ## print benchmark figures
	$(PY) -m bench

SIM_NODES ?= 2
SIM_RUN_CONFIG ?=
sim: setup  ## simulate SIM_NODES clients offline (tiny SmolVLA, synthetic data) with flwr run . local-sim
	PATH=$(abspath $(VENV)/bin):$$PATH zk0 sim start --num-supernodes $(SIM_NODES)
	PATH=$(abspath $(VENV)/bin):$$PATH flwr run . local-sim --stream $(if $(SIM_RUN_CONFIG),--run-config "$(SIM_RUN_CONFIG)")

# --- the lab: three Debian container hosts provisioned by the real playbooks (lab/) ---
DEMO_ROUNDS ?= 3
.PHONY: demo demo-down test-lab lab-tools lab-prepare
lab-tools:
	@command -v ssh >/dev/null && command -v ssh-keyscan >/dev/null || { \
	    echo "installing openssh-client (Ansible reaches the lab hosts over SSH)"; \
	    scripts/apt-install.sh openssh-client; }

demo: setup setup-ops image lab-tools  ## three container hosts, site.yml over SSH, a federated run, a summary
	$(PY) -m lab up
	$(PY) -m lab converge
	$(PY) -m lab run --rounds $(DEMO_ROUNDS)

lab-prepare: setup image systemd-image  ## the lab's images, its registry holding the zk0 images, the spare host's archive
	$(PY) -m lab prepare --archive

demo-down:  ## remove every container, network and volume the lab made (and .lab/)
	$(PY) -m lab down

# Its own pytest temp root: it runs beside test-image, and each pytest session prunes all but
# the newest three sessions' folders under the shared one.
LAB_BASETEMP ?= /tmp/zk0-test-lab
test-lab: setup setup-ops image systemd-image lab-tools  ## full-stack test: the lab, site.yml twice, runs, enrollment, a host lost
	ZK0_LAB_REQUIRED=1 $(PY) -m pytest tests/lab --durations=0 -rP --basetemp=$(LAB_BASETEMP)  # -rP: the figures the tests print

sim-stop:  ## stop the simulation SuperLink that `make sim` started
	PATH=$(abspath $(VENV)/bin):$$PATH zk0 sim stop

lint: setup lint-ansible  ## ruff format + ruff check over all Python, mypy over zk0/, ansible-lint over roles
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:  ## remove build outputs (keeps .venv)
	rm -rf outputs .pytest_cache

# --- operator tooling and role tests (Ansible, ansible-lint, Molecule; no torch) ---
VENV_OPS := .venv-ops
OPS_BIN  := $(VENV_OPS)/bin
ROLES    := superlink supernode nvidia monitoring docker tailscale  # longest Molecule scenario first

.PHONY: setup-ops lock-ops lint-ansible test-roles systemd-image

$(VENV_OPS)/.installed: requirements/ops.txt
	test -x $(OPS_BIN)/python || $(PYTHON312) -m venv $(VENV_OPS)
	$(OPS_BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(OPS_BIN)/uv pip sync -q -p $(OPS_BIN)/python requirements/ops.txt
	touch $@

setup-ops: $(VENV_OPS)/.installed  ## create .venv-ops with Ansible, ansible-lint and Molecule

lock-ops:  ## re-resolve requirements/ops.txt from requirements/ops.in
	$(OPS_BIN)/uv pip compile -q requirements/ops.in --python-version 3.12 \
	    --python-platform x86_64-manylinux_2_28 -o requirements/ops.txt

lint-ansible: setup-ops  ## ansible-lint --profile production over roles (and playbooks)
	PATH=$(abspath $(OPS_BIN)):$$PATH $(OPS_BIN)/ansible-lint --profile production roles playbooks

# Debian 13 for every scenario, Debian 12 for the roles tested on both (tailscale, nvidia).
# Built side by side: debootstrap mostly waits on the mirror (both take about as long as one).
SYSTEMD_SUITES := trixie bookworm
systemd-image:  ## build the local Debian 13 and 12 systemd images that Molecule uses (cached)
	scripts/ensure-docker.sh
	pids=""; for suite in $(SYSTEMD_SUITES); do scripts/build-systemd-image.sh $$suite & pids="$$pids $$!"; done; \
	    for pid in $$pids; do wait $$pid || exit 1; done

# Two scenarios at a time (each mostly waits on its containers and the host's Docker), the
# longest first; -O prints each scenario's log whole when it ends. ROLES_JOBS=1: one by one.
ROLES_JOBS ?= 2
test-roles: setup-ops systemd-image  ## Molecule test (converge, idempotence, verify) of every role, ROLES_JOBS at a time
	$(MAKE) --no-print-directory -j$(ROLES_JOBS) -O $(addprefix test-role-,$(ROLES))

# superlink and supernode drive the host's Docker (socket mounted into the Molecule instance)
# and need the zk0 image there (built by `make image` when missing).
.PHONY: zk0-image-present
test-role-superlink test-role-supernode: zk0-image-present  ## Molecule test of the deployment roles (host Docker, zk0 image)

zk0-image-present:
	docker image inspect $${ZK0_IMAGE:-zk0:$(ZK0_VERSION)} >/dev/null 2>&1 || $(MAKE) image

# Settings every scenario shares (driver, Ansible options, test sequence); the shared prepare
# play sits beside it.
MOLECULE_BASE := $(abspath .config/molecule/config.yml)

test-role-%: setup-ops systemd-image  ## Molecule test of one role, e.g. make test-role-docker
	cd roles/$* && PATH=$(abspath $(OPS_BIN)):/usr/bin:$$PATH \
	    DOCKER_HOST=$${DOCKER_HOST:-unix:///var/run/docker.sock} molecule --base-config $(MOLECULE_BASE) test

# --- container image (docker/Dockerfile): local base, zk0 image, image tests ---
ZK0_BASE_IMAGE ?= zk0-base:py3.12-bookworm

.PHONY: image-base image test-image

image-base:  ## build the local Python 3.12 base image (debootstrap; no registry; cached)
	scripts/ensure-docker.sh
	scripts/build-base-image.sh $(ZK0_BASE_IMAGE)

image: image-base  ## build zk0:<version> and zk0-proxy:<version> (+ :latest) with BuildKit (host CA as build secret)
	BASE_IMAGE=$(ZK0_BASE_IMAGE) scripts/build-image.sh

test-image: setup image  ## assert on the built image and the Compose stacks (docker compose v2)
	scripts/ensure-compose.sh
	ZK0_IMAGE_REQUIRED=1 $(PY) -m pytest tests/image $(DURATIONS)
