# `make run` and `make test` work from a fresh clone; every other target is a step of theirs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
HOST ?= 127.0.0.1
PORT ?= 8000
MONITOR_PORT ?= 9090
MONITOR_DATA ?= instance/monitor

TS_TOOLS := devtools/typescript

.PHONY: install run serve demo migrate seed test test-under-load lint format clean bench lab monitor types typescript-tools fuzz guard-sim guard-sim-watch profile pg-capacity prove

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# openapi-typescript and typescript, pinned in devtools/typescript/package-lock.json (npm registry).
$(TS_TOOLS)/node_modules/.installed: $(TS_TOOLS)/package-lock.json
	cd $(TS_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

typescript-tools: $(TS_TOOLS)/node_modules/.installed

# Regenerate progress/static/progress-api.d.ts from the OpenAPI document (commit the result;
# tests/test_frontend_contract.py fails while it is out of date).
types: install typescript-tools
	@tmp=$$(mktemp -d) && \
	PROGRESS_ENV=development PROGRESS_LOG_LEVEL=ERROR PROGRESS_INSTANCE_PATH=$$tmp \
		DATABASE_URL=sqlite:///$$tmp/openapi.db $(FLASK) openapi --output $$tmp/openapi.json && \
	$(TS_TOOLS)/node_modules/.bin/openapi-typescript $$tmp/openapi.json \
		--output progress/static/progress-api.d.ts && rm -rf $$tmp

migrate: install
	PROGRESS_ENV=development $(FLASK) db upgrade

seed: migrate
	PROGRESS_ENV=development $(FLASK) seed

# The embedded default: SQLite under instance/, flags in the same database, one worker. The
# URLs and the demo tokens are printed last, once the worker serves; no line per request.
RUN_URL = http://$(HOST):$(PORT)
run: seed
	@{ echo "The lesson progress service is ready on $(RUN_URL)"; \
	  echo "  learner page   $(RUN_URL)/"; \
	  echo "  rollout page   $(RUN_URL)/admin/rollout   (paste the admin token)"; \
	  echo "  API docs       $(RUN_URL)/apidoc/swagger/   and $(RUN_URL)/apidoc/redoc/"; \
	  echo "  metrics        $(RUN_URL)/metrics"; \
	  echo "Demo tokens:"; \
	  PROGRESS_ENV=development $(FLASK) users demo; \
	  echo "Ctrl-C stops it."; } > instance/ready.txt
	@PROGRESS_ENV=development HOST=$(HOST) PORT=$(PORT) WEB_CONCURRENCY=1 GUNICORN_THREADS=8 \
		PROGRESS_ACCESS_LOG=off GUNICORN_READY_MESSAGE_FILE=instance/ready.txt \
		$(BIN)/gunicorn -c gunicorn.conf.py app:app

# The same service behind its front door (docs/operations.md, "The front door"): Debian's
# nginx on HOST:PORT before gunicorn on a unix socket; Ctrl-C stops both. Development
# settings unless PROGRESS_ENV is exported (production: with PROGRESS_JWT_SECRET and
# DATABASE_URL); the demo users only in development.
SERVE_ENV := $(or $(PROGRESS_ENV),development)
WEB_CONCURRENCY ?= 1
GUNICORN_THREADS ?= 8
serve: seed
	@if [ "$(SERVE_ENV)" = development ]; then PROGRESS_ENV=development $(FLASK) users demo; fi
	PROGRESS_ENV=$(SERVE_ENV) $(BIN)/python -m devtools.serve --listen $(HOST):$(PORT) \
		--workers $(WEB_CONCURRENCY) --threads $(GUNICORN_THREADS)

# The embedded service with about 50 simulated learners at 10% for about 10 minutes, the
# guard on its own counters, a slow cache update (legacy shows false lock screens); prints
# the URLs and stops by itself. Data in instance/demo. Options: DEMO_ARGS='--minutes 5'
demo: install
	$(BIN)/python -m lab.demo --host $(HOST) --port $(PORT) $(DEMO_ARGS)

# The suite on TEST_WORKERS pytest-xdist workers (a file stays on one worker; 0: no workers),
# then its 15 slowest tests (docs/testing.md keeps the times of its parts);
# PYTEST_ARGS='--junitxml=report.xml' and the like are passed on.
TEST_WORKERS ?= 2
test: lint typescript-tools
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

# `make test` with two CPU-bound processes beside it for the whole run, as on a machine other
# suites keep busy (docs/testing.md); UNDER_LOAD_PROCESSES=N for another number.
UNDER_LOAD_PROCESSES ?= 2
test-under-load: install
	$(BIN)/python -m devtools.under_load --processes $(UNDER_LOAD_PROCESSES) -- $(MAKE) test

# ruff, and the import contracts of pyproject.toml (the package's layers)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# wrk against PostgreSQL on 127.0.0.1:5432 (docs/performance.md); options: BENCH_ARGS='--repeats 7',
# beside another revision in the same rounds: BENCH_ARGS='--baseline main~3'
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# cProfile of the WSGI app in process: PROFILE_ARGS='--path legacy'
profile: install
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

# What bounds one PostgreSQL primary: completions/s with NOTIFY, deliveries to N listeners
pg-capacity: install
	$(BIN)/python -m bench.pg_capacity $(CAPACITY_ARGS)

# The consistency lab (issue 5): real instances, a lagging replica, faults, simulated learners;
# options: make lab LAB_ARGS='--learners 200 --kill-worker' (see python -m lab --help)
lab: install
	$(BIN)/python -m lab $(LAB_ARGS)

# The guard's error rates on simulated stages, the previous rule and the sequential test
# (docs/guard.md); a few minutes. Options: make guard-sim GUARD_SIM_ARGS='--stages 2000'
guard-sim: install
	$(BIN)/python -m progress.guard.simulation $(GUARD_SIM_ARGS)

# The watch at 100% on simulated watches (docs/guard.md, "The watch at 100%"): false pauses
# with equal paths, and how soon a twice-worse verified path is paused; about 6 minutes.
# Options: make guard-sim-watch WATCH_SIM_ARGS='--watches 200'
guard-sim-watch: install
	$(BIN)/python -m progress.guard.watch_simulation $(WATCH_SIM_ARGS)

# The interleaving model's long run (docs/proof.md): tens of thousands of steps on the verified
# path, and each mutation's counterexample shrunk longer; MODEL_SEED=N replays a run.
# Figures and counterexamples land in test-artifacts/model/.
prove: install
	MODEL_PROFILE=prove $(BIN)/pytest tests/test_model.py -s -p no:cacheprovider

# Debian's Prometheus with the bundled scrape config and alert rules, scraping what `make run`
# serves (HOST:PORT); prints its alerts page. Ctrl-C stops it. See docs/operations.md.
monitor: install
	$(BIN)/python devtools/monitor.py --service $(HOST):$(PORT) --listen 127.0.0.1:$(MONITOR_PORT) \
		--data $(MONITOR_DATA)

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache test-artifacts $(TS_TOOLS)/node_modules

# schemathesis' command line with a larger budget than the suite's (10 examples per operation)
fuzz: install
	SCHEMATHESIS_MAX_EXAMPLES=200 $(BIN)/pytest tests/test_schemathesis_cli.py -s
