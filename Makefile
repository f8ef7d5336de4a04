PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-fast demo bench bench-quick bench-seed bench-scan chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make test: create the environment if missing, install, run the whole suite
## (four pytest-xdist workers: most tests wait on consumer processes and the emulator, not the CPU;
## 631 tests took 2 min 46 s on 2 cores instead of 8 min)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 4

## make test-fast: everything except the slow end-to-end tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 4 -m "not slow"

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
	rm -rf $(VENV) data bench-results .pytest_cache
