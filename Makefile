PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# the lowest versions pyproject.toml allows (uv's lowest-direct resolution), in their own venv
LOWEST_VENV  ?= .venv-lowest
LOWEST_LOCK  := requirements-lowest.lock
LOWEST_STAMP := $(LOWEST_VENV)/.installed
# Lockfiles are installed with uv, pinned: pip took ~5 min here for the ~45 pinned packages
# (an index round trip each), uv 15 s with a cold cache. Bytecode is compiled at install, as
# pip does: otherwise the first consumers of a parallel test run each compile google-genai.
UV_VERSION := 0.13.9
COMPILE = $(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11

.PHONY: lint test test-fast test-lowest lock demo bench bench-quick bench-seed bench-scan chaos clean

# $(call install_locked,VENV,LOCKFILE): exactly the lockfile's versions, then objlib itself
define install_locked
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	test -x $(1)/bin/uv || $(1)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(1)/bin/uv pip install --quiet --compile-bytecode --python $(1)/bin/python -r $(2)
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python --no-deps -e .
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call install_locked,$(VENV),$(LOCK))
	touch $(STAMP)

$(LOWEST_STAMP): pyproject.toml $(LOWEST_LOCK)
	$(call install_locked,$(LOWEST_VENV),$(LOWEST_LOCK))
	touch $(LOWEST_STAMP)

## make lock: re-pin requirements.lock (newest allowed) and requirements-lowest.lock (lowest
## allowed) after changing pyproject.toml; tests/test_lockfiles.py fails until they match it
lock: $(STAMP)
	$(COMPILE) -o $(LOCK)
	$(COMPILE) --resolution lowest-direct -o $(LOWEST_LOCK)


## make lint: ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade) over the tree,
## mypy over objlib/ (configured in pyproject.toml), and the import contracts
## (pyproject.toml [tool.importlinter]: the layers, huey only in objlib.tasks); a few seconds
lint: $(STAMP)
	$(BIN)/python -m ruff check
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

## make test: create the environment if missing, install, lint, run the whole suite
## (four pytest-xdist workers: most tests wait on consumer processes and the emulator, not the CPU;
## 631 tests took 2 min 46 s on 2 cores instead of 8 min)
test: lint
	$(BIN)/python -m pytest -q -n 4

## make test-fast: everything except the slow end-to-end tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 -m "not slow"

## make test-lowest: the fast tests at the lowest versions pyproject.toml allows (run by CI)
test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest -q -n 4 -m "not slow"

## make demo: the whole pipeline on the bundled emulator and a generated sample library
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## make bench: pipeline, overhead, rate-limit, scan, status and seed figures (BENCH_ARGS="--only rate")
bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

## make bench-quick: a smoke run of every benchmark (about two minutes)
bench-quick: $(STAMP)
	$(BIN)/python scripts/bench.py --quick $(BENCH_ARGS)

## make bench-seed: objlib vs the seed's design, field profile, 450 files, clean and faulty
## (~13 min; BENCH_ARGS="--baseline-files 150 --baseline-runs 3")
bench-seed: $(STAMP)
	$(BIN)/python scripts/bench.py --only seed --baseline-runs 3 $(BENCH_ARGS)

bench-scan: $(STAMP)
	$(BIN)/python scripts/bench_scan.py

## make chaos: kill workers at random during a faulty run, then prove nothing was lost
## (CHAOS_ARGS="--seed 7" replays a run)
chaos: $(STAMP)
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST_VENV) data bench-results .pytest_cache .mypy_cache .ruff_cache
