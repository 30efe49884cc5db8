# Two commands do everything (see README "Quickstart"):
#   make demo   set up .venv (run-time deps only) and run the daemon on its embedded defaults
#   make test   set up .venv (+ distill, dev extras, Debian packages), lint, run the whole suite
# Also: make lint (ruff + mypy --strict), make test-fast (pytest -m "not slow", < 2 min:
# for development; a test that starts a daemon, a CLI subprocess, a browser, a broker
# restart or trains a model is marked `slow` and runs only in `make test`).
#
# The venv is installed once per change of pyproject.toml (a stamp file records it), so
# a second `make demo` starts the daemon at once; pip's output goes to .venv/pip-*.log
# and is shown only when it fails.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
PIP      = $(BIN)/python -m pip
PIPFLAGS = --disable-pip-version-check --progress-bar off -q

.PHONY: demo test test-fast setup-run setup-dev debs lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	@$(PIP) install $(PIPFLAGS) -U pip "setuptools<81" wheel > $(VENV)/pip-base.log 2>&1 \
	  || { tail -n 30 $(VENV)/pip-base.log; exit 1; }

# run-time install; the dev install below includes it
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@if [ -f $(VENV)/.installed-dev ] && [ $(VENV)/.installed-dev -nt pyproject.toml ]; then \
	  touch $@; exit 0; fi; \
	echo "installing sleepstream into $(VENV) (log: $(VENV)/pip-run.log)"; \
	$(PIP) install $(PIPFLAGS) -e . > $(VENV)/pip-run.log 2>&1 \
	  || { tail -n 30 $(VENV)/pip-run.log; exit 1; }; \
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "installing sleepstream[distill,dev] into $(VENV) (log: $(VENV)/pip-dev.log)"
	@$(PIP) install $(PIPFLAGS) -e ".[distill,dev]" > $(VENV)/pip-dev.log 2>&1 \
	  || { tail -n 30 $(VENV)/pip-dev.log; exit 1; }
	@touch $@ $(VENV)/.installed-run

setup-run: $(VENV)/.installed-run

setup-dev: $(VENV)/.installed-dev

# Debian packages the tests drive for real: mosquitto (MQTT broker), chromium +
# chromium-driver (the live view's browser test), prometheus (promtool checks the rules).
debs:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages for the tests:$$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  else echo "apt-get not found: tests needing$$missing will be skipped"; fi; \
	fi

demo: setup-run
	$(BIN)/sleepstream run --source synthetic-night

lint: setup-dev
	$(BIN)/ruff check sleepstream distill tests bench
	$(BIN)/ruff format --check sleepstream distill tests bench
	$(BIN)/mypy

test: setup-dev debs lint
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: setup-dev
	$(BIN)/python -m pytest -m "not slow" -x -q
