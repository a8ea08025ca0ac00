# The two commands of the quick start: `make up` and `make test`. Each bootstraps its own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCKS := requirements.lock requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: up demo test test-unit chromium example bench lint schemas lock clean help

help:
	@echo "make up     run the whole pipeline locally (broker, database, three services)"
	@echo "make demo   make up with simulated traffic, both web UIs and annotator tokens printed (Ctrl-C stops)"
	@echo "make test   run the whole test suite against a real broker and database (and Chromium, for tests/browser)"
	@echo "make example  drive a running stack (make up) from votes to a pair and a task"
	@echo "make bench  run the benchmarks in bench/, the 60 s load run and the UI's verdict -> next task included (results in bench/results/)"
	@echo "make lint   ruff"
	@echo "make schemas regenerate shared/schemas/*.json from the contracts"

# The runtime pins (requirements.lock, all the production image gets) and the development ones on top.
$(STAMP): $(LOCKS) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

up: $(STAMP)
	$(BIN)/python -m deploy.up

# The stack of `make up` with the traffic simulator at a gentle rate (DEMO_ARGS, e.g. --rate 50 --seconds 300).
demo: $(STAMP)
	$(BIN)/python -m deploy.demo $(DEMO_ARGS)

# Most tests wait on the broker (a consumer group join takes seconds on Tansu), so they run in parallel,
# a test file per worker, each worker with its own broker and database; the fault tests, which kill and
# time whole stacks of processes, run after them on their own. pytest exits 5 when no test ran: a failure.
TEST_WORKERS ?= 3
test: export OPENBLAS_NUM_THREADS = 1
test: export OMP_NUM_THREADS = 1
test: $(STAMP) chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests --ignore=tests/faults
	$(BIN)/python -m pytest tests/faults

# tests/browser drives the system Chromium (Debian's `chromium`; Playwright's own download is not used).
# Installed here when missing and this shell may (root and apt-get); otherwise those tests are skipped
# with a notice naming the package.
chromium:
	@if [ -n "$$CHROMIUM_PATH" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
			|| echo "*** could not install chromium: the browser tests will be SKIPPED"; \
	else \
		echo "*** no Chromium, and no root + apt-get to install Debian's chromium package: the browser tests will be SKIPPED"; \
	fi

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

example: $(STAMP)
	$(BIN)/python examples/pair_and_task.py

bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.aggregator
	$(BIN)/python -m bench.queue
	$(BIN)/python -m bench.leaderboard
	$(BIN)/python -m bench.export
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.ui

lint: $(STAMP)
	$(BIN)/ruff check shared services deploy tests bench examples

schemas: $(STAMP)
	$(BIN)/python -m shared.schemas

# Re-pin both lock files from pyproject.toml's direct pins: the runtime closure, then the development rest.
lock: $(STAMP)
	$(BIN)/python -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(d["dependencies"] + sum(d["optional-dependencies"].values(), [])))' > .run-reqs.txt
	$(BIN)/python -m pip install -q -r .run-reqs.txt && rm .run-reqs.txt
	$(BIN)/python -m deploy.lock

clean:
	rm -rf .run .pytest_cache
