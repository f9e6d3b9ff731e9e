# Set-up and entry points. `make demo` runs the main job, `make test` runs the linter and the test suite; both
# first create .venv, install FFmpeg's shared libraries (Debian) if missing, torch 2.14.1 +
# torchvision 0.29.1 and the package; `make test` also installs Debian's Chromium (the viewer's browser
# tests drive it headless). Re-running skips what is already installed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUTPUT ?= runs/demo
PYTEST_ARGS ?= -n 2 --timeout 1200
# Tests run with freed and new heap memory filled with this byte, so output that depends on
# uninitialised memory cannot pass by luck.
HEAP_PERTURB ?= 165
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install install-test ffmpeg chromium clean

demo: install
	$(BIN)/ditto-hf generate --output $(DEMO_OUTPUT)
	@echo "Browse the triplets (kept and rejected) in a local page: $(BIN)/ditto-hf view $(DEMO_OUTPUT)"

test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MALLOC_PERTURB_=$(HEAP_PERTURB) $(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

ffmpeg:
	@ldconfig -p | grep -q 'libavutil\.so' || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg; }

chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	touch $@

$(VENV)/.installed: pyproject.toml | ffmpeg $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | ffmpeg chromium $(VENV)/.torch
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) runs build *.egg-info
