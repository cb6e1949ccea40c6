# The README's two commands are `make demo` and `make test`; everything else here serves them.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

LOCK   := requirements.lock

.PHONY: demo test lint bench lock clean-demo browser votools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Install the versions the suite passed with (requirements.lock constrains every package pip resolves);
# re-install whenever pyproject.toml or the lock changes.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	# dagster-dask (the `dask` extra) requires the dagster release before the locked one: its own
	# dependencies come with the dev extra, so it goes in without them, at the locked version.
	$(BIN)/python -m pip install --quiet --no-deps -c $(LOCK) dagster-dask
	touch $@

## lock: re-resolve the newest versions pyproject.toml allows and record them in requirements.lock
## (on purpose, never by drift: run `make test` next and commit the lock only if it passes)
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	{ echo "# The versions \`make test\` passed with: \`make\` installs with \`pip install -c $(LOCK) -e '.[dev]'\`."; \
	  echo "# Ranges for users stay in pyproject.toml. Regenerate on purpose with \`make lock\` (then \`make test\`), never by hand."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -viE '^(astrovision|pip)([=@ ]|$$)'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	touch $(VENV)/.installed

## demo: create the venv, install, and run the whole pipeline on the synthetic demo survey (offline)
demo: $(VENV)/.installed
	$(BIN)/astrovision demo

## browser: Debian's chromium + chromium-driver for the web page's headless test (installed when missing,
## as root; otherwise says how, and that test is skipped with that reason)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium + chromium-driver (headless browser test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium missing and not root: the browser test will be skipped (sudo apt-get install chromium chromium-driver)"; fi

## votools: Debian's stilts (the export and VO tests read files and services with it), topcat and xvfb
## (the TOPCAT screenshot of the docs, docs/img/); installed when missing, as root, else says how
votools:
	@if [ -x /usr/bin/stilts ] && [ -x /usr/bin/topcat ] && [ -x /usr/bin/Xvfb ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing stilts + topcat + xvfb (STILTS tests, TOPCAT screenshot)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stilts topcat xvfb >/dev/null; \
	else echo "stilts/topcat/xvfb missing and not root: the STILTS tests will be skipped (sudo apt-get install stilts topcat xvfb)"; fi

## test: create the venv if needed and run the test suite (fails when no test ran)
test: $(VENV)/.installed browser votools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(VENV)/.installed
	$(BIN)/ruff check .

## bench: the benchmark scripts behind docs/benchmarks.md (slow: minutes to an hour)
bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done
