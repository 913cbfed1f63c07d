# Bare-machine entry points (Debian/Ubuntu, Python 3.11, no ROS install needed).
#   make demo   - the main job: synthetic depth camera -> pipeline node -> out/ (BEV PNG, PLY, stats)
#   make test   - the whole test suite
#   make bench  - benchmarks (kernels vs numpy reference and memcpy floor, end-to-end node)
# Each target sets itself up: .venv with pinned dependencies, system packages, the Cython build.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The ROS 2 distribution of the venv: kilted (default: .venv from requirements.txt) or jazzy
# (.venv-jazzy from requirements-jazzy.txt), chosen on the command line only, e.g.
# `make test ROS_DISTRO=jazzy`; a ROS_DISTRO exported by a sourced ROS install is ignored.
ifeq ($(origin ROS_DISTRO),command line)
DISTRO := $(ROS_DISTRO)
else
DISTRO := kilted
endif
ifeq ($(DISTRO),kilted)
VENV := .venv
REQUIREMENTS := requirements.txt
else ifeq ($(DISTRO),jazzy)
VENV := .venv-jazzy
REQUIREMENTS := requirements-jazzy.txt
else
$(error ROS_DISTRO=$(DISTRO): kilted (the default) or jazzy)
endif
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.requirements-installed
KERNEL_SOURCES := $(wildcard pointcloud_pipeline/_*.pyx pointcloud_pipeline/*/_*.pyx pointcloud_pipeline/_*.h)
BUILD_STAMP := build/.kernels-built
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv build test demo bench fuzz soak sanitize colcon-test clean

help:
	@echo "make demo | make test | make bench | make fuzz | make soak | make sanitize | make colcon-test | make setup | make clean"

setup: system-deps build

# System tools: clang (tinygrad's CPU device compiles kernels with it: monocular depth),
# gdal-bin (gdalinfo, gdaldem: independent references of the raster tests; the tools themselves
# use the GDAL inside the rasterio wheel) and chromium (Debian's; the browser-view tests drive it
# headless with playwright). Installed with apt-get when root or sudo allows it.
system-deps:
	@missing=""; command -v clang >/dev/null 2>&1 || missing=" clang"; \
	command -v gdalinfo >/dev/null 2>&1 || missing="$$missing gdal-bin"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: apt-get install$$missing failed; the tests that need them are skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  echo "installing$$missing with sudo apt-get"; \
	  (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: apt-get install$$missing failed; the tests that need them are skipped"; \
	else \
	  echo "warning:$$missing missing and cannot be installed without root:"; \
	  echo "  run 'sudo apt-get install -y$$missing'."; \
	  echo "  Until then the monocular-depth tests (clang), the gdalinfo/gdaldem checks of the"; \
	  echo "  raster tests (gdal-bin) and the browser-view tests (chromium) are skipped, and the"; \
	  echo "  estimator node cannot run on CPU."; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): $(REQUIREMENTS) | $(PY)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

venv: $(DEPS_STAMP)

$(BUILD_STAMP): $(DEPS_STAMP) setup.py $(KERNEL_SOURCES)
	$(PY) setup.py --quiet build_ext --inplace
	@mkdir -p $(dir $@) && touch $@

build: $(BUILD_STAMP)

test: setup
	$(PY) -m pytest test $(PYTEST_ARGS)

demo: setup
	$(PY) -m pointcloud_pipeline.demo $(DEMO_ARGS)

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# Robustness runs beyond make test (README, Robustness):
#   make fuzz     - >= 10,000 malformed messages per node over loopback DDS (bench/fuzz.py)
#   make soak     - the demo chain for 10,000 VGA frames at 30 Hz: RSS growth, losses, latency
#   make sanitize - the kernels and their property-based fuzz under ASan + UBSan
fuzz: setup
	$(PY) bench/fuzz.py $(FUZZ_ARGS)

soak: setup
	$(PY) bench/soak.py $(SOAK_ARGS)

# Kernels under AddressSanitizer + UBSan: an instrumented copy of the package in build/sanitize
# (the in-place .so files are untouched), the kernel tests and test/test_kernel_fuzz.py at its
# larger profile with the runtimes preloaded; fails on any sanitiser report or failed test.
sanitize: setup
	$(PY) test/sanitize/run_sanitized.py $(PYTEST_ARGS)

# The ROS user's path: colcon build + colcon test in a throwaway workspace, driven from the venv
# (colcon-core, colcon-ros and ament_package from PyPI reproduce a ROS install's colcon).
colcon-test: setup
	$(PY) test/colcon_workspace.py

clean:
	rm -rf build install log out *.egg-info
	find pointcloud_pipeline \( -name '_*.c' -o -name '_*.so' \) -delete
