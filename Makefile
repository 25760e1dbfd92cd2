# vigil: `make run` and `make test` each set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VIGIL_HOME ?= $(CURDIR)/.vigil

.PHONY: run test lint typecheck unit chaos bench clean

$(BIN)/vigil: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Set up the embedded SQLite instance with the example definitions, run a job once, then
# run the daemon in the foreground (Ctrl-C drains it and exits).
run: $(BIN)/vigil
	@mkdir -p $(VIGIL_HOME)
	@test -f $(VIGIL_HOME)/vigil.yaml || cp examples/vigil.yaml $(VIGIL_HOME)/vigil.yaml
	$(BIN)/vigil instance migrate
	$(BIN)/vigil definitions list
	$(BIN)/vigil run launch orders --wait
	@echo "inspect it with: $(BIN)/vigil run list; $(BIN)/vigil run show RUN_ID"
	@echo "the daemon runs below; Ctrl-C stops it. From another terminal:"
	@echo "  status:  VIGIL_HOME=$(VIGIL_HOME) $(BIN)/vigil daemon status --follow"
	@echo "  metrics: http://127.0.0.1:9464/metrics"
	$(BIN)/vigil daemon run

lint: $(BIN)/vigil
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/vigil
	$(BIN)/mypy

unit: $(BIN)/vigil
	$(BIN)/pytest -q

test: lint typecheck unit

# The reliability suite in its long form (docs/reliability.md): crash chaos (300 runs, 20
# daemon kills), a soak (100,000 runs, a 10-minute daemon), and the others' long forms;
# `make test` runs the same tests in their short form.
# VIGIL_TEST_CHAOS_SEED=N repeats a seeded run.
# Then many daemons (bench/ha.py chaos, about 10 minutes): three daemons on one throwaway
# PostgreSQL, 2,000 queued runs, 200 per-second schedules and 20 sensors for two minutes,
# a random daemon SIGKILLed every 20 s; it exits 1 when the store shows a duplicate run, a
# tick evaluated twice, a limit overshoot, a run not terminal or a due tick not recorded.
chaos: $(BIN)/vigil
	VIGIL_TEST_CHAOS_LONG=1 $(BIN)/pytest -q tests/reliability
	$(BIN)/python -m bench.ha chaos

bench: $(BIN)/vigil
	$(BIN)/python -m bench.launch
	$(BIN)/python -m bench.events
	$(BIN)/python -m bench.daemon
	$(BIN)/python -m bench.queue
	$(BIN)/python -m bench.worker
	$(BIN)/python -m bench.schedules --count 1000 --minutes 2
	$(BIN)/python -m bench.monitor

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
