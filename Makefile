# livemig: `make demo` and `make test` do all the set-up on a fresh Debian 12 machine (as root).
# Before make: `apt-get install make git ca-certificates` (the README says so).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= /usr/bin/python3
VENV        := .venv
VPY         := $(VENV)/bin/python
# Debian 11 and 13 roots (mmdebstrap, cached): tests/tools/distroot.py, tests/tools/distro-tests.
DISTRO_TESTS := tests/tools/distro-tests

# Debian packages the tests and the demo need (docs/testing.md, "What the integration tests need on the machine").
APT_PACKAGES = \
	python3 python3-venv python3-dev python3-libvirt python3-lxml \
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils \
	libvirt-dev pkg-config gcc libc6-dev \
	pacemaker pacemaker-cli-utils corosync crmsh pcs resource-agents \
	drbd-utils libxml2-utils cpio busybox-static iproute2 util-linux procps kmod bindfs \
	strace mmdebstrap systemd \
	$(EXTRA_APT_PACKAGES)

PIP_PACKAGES := pytest pytest-timeout hypothesis ruff mypy lxml-stubs types-setuptools bandit

-include mk/*.mk

.PHONY: help deps apt-deps venv lint unit test test-debian11 test-debian13 test-lab-debian13 test-distros \
	demo demo-local clean

help:
	@echo "make demo        - two-node lab: a VM live-migrated by Pacemaker there and back"
	@echo "make demo-local  - the agent's lifecycle against a real VM on one local libvirtd"
	@echo "make test        - install every dependency and run the whole test suite"
	@echo "make test-distros - only the Debian 11 and Debian 13 tiers (docs/testing.md)"

apt-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.stamp: Makefile
	rm -rf $(VENV)
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PIP_PACKAGES)
	touch $@

venv: apt-deps $(VENV)/.stamp

deps: apt-deps venv

lint: deps
	$(VENV)/bin/ruff check lib agents/VirtualDomain hooks/livemig-qemu-hook tests benchmarks tools
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -r lib

unit: deps
	$(VPY) -m pytest tests/unit

# Debian 11 (Python 3.9, lxml 4.6, libvirt-python 7.0: RHEL 9's floors and below) and Debian 13
# (Python 3.13, Pacemaker 3.0, crmsh 5, pcs 0.12, libvirt 11.3), each in its own cached root.
test-debian11: apt-deps
	$(DISTRO_TESTS) debian11

test-debian13: apt-deps
	$(DISTRO_TESTS) debian13

# The two-node lab with Debian 13 as the nodes' lower layer: Pacemaker 3.0 live-migrates.
test-lab-debian13: deps
	$(DISTRO_TESTS) lab-debian13

# The two unit/tool tiers mostly wait on subprocesses: they run side by side. Each tier runs
# whatever failed before it (one red test must not hide the others' results); the exit is 1 if any failed.
test-distros: apt-deps
	@rc=0; \
	$(MAKE) --no-print-directory -j2 --output-sync=target test-debian11 test-debian13 || rc=1; \
	$(MAKE) --no-print-directory test-lab-debian13 || rc=1; \
	exit $$rc

test: deps
	@rc=0; started=$$SECONDS; \
	$(MAKE) --no-print-directory lint || rc=1; \
	$(VPY) -m pytest tests || rc=1; \
	echo "== Debian 12 tiers (lint, pytest tests): $$((SECONDS - started)) s"; \
	$(MAKE) --no-print-directory test-distros || rc=1; \
	echo "== make test: $$((SECONDS - started)) s, exit $$rc"; \
	exit $$rc

demo: deps
	$(VPY) -m tests.lab.demo

demo-local: deps
	$(VPY) -m tests.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build
	find . -name __pycache__ -prune -exec rm -rf {} +

# The agent's state machine on two fake nodes with a larger, randomized budget (docs/testing.md).
.PHONY: test-state-machine
test-state-machine: deps
	LIVEMIG_SM_EXAMPLES=$${LIVEMIG_SM_EXAMPLES:-200} LIVEMIG_SM_STEPS=$${LIVEMIG_SM_STEPS:-30} \
	LIVEMIG_SM_SEED=$${LIVEMIG_SM_SEED:-$$RANDOM} $(VPY) -m pytest -p no:cacheprovider tests/unit/properties
