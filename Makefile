# Two commands do everything (see README "Quickstart"):
#   make demo   set up .venv (run-time deps only) and run the daemon on its embedded defaults
#   make test   set up .venv (+ distill, dev extras, Debian mosquitto) and run the whole suite
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
PIP      = $(BIN)/python -m pip
PIPFLAGS = --disable-pip-version-check --progress-bar off -q

.PHONY: demo test setup-run setup-dev debs lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install $(PIPFLAGS) -U pip "setuptools<81" wheel

setup-run: $(BIN)/python
	$(PIP) install $(PIPFLAGS) -e .

setup-dev: $(BIN)/python
	$(PIP) install $(PIPFLAGS) -e ".[distill,dev]"

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

test: setup-dev debs
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: setup-dev
	$(BIN)/ruff check sleepstream distill tests bench
	$(BIN)/ruff format --check sleepstream distill tests bench
