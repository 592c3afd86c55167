# The README's two commands are `make demo` and `make test`. Both work on a fresh
# machine with only Python 3.12 (`python`, e.g. through pyenv) and make: `install`
# bootstraps uv with pip and builds .venv from the committed uv.lock.

PYTHON ?= python
PORT ?= 8000
VENV_BIN := .venv/bin

.DEFAULT_GOAL := help
.PHONY: help install browser demo test bench-db bench bench-sql bench-compare bench-web lint format chaos

help: ## Show this help
	@echo "agentops: run LLM support agents in production, safely."
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo
	@echo "Backends come from the environment (see README.md and .env.example);"
	@echo "with none set: SQLite, the filesystem broker and the offline model."

install: ## Create .venv from uv.lock (installs uv with pip if needed)
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore uv
	@$(PYTHON) -m uv sync --frozen --compile-bytecode --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"

demo: install ## Migrate, seed the demo shop and tickets, run web + worker + beat (PORT=8000)
	$(VENV_BIN)/python manage.py migrate --no-input
	$(VENV_BIN)/python manage.py seed_demo
	$(VENV_BIN)/python manage.py rundemo --port $(PORT)

browser: ## Install Debian's chromium for the browser tests, if it is missing
	@if [ ! -x /usr/bin/chromium ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "Installing Debian's chromium for the browser tests."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "The browser tests need /usr/bin/chromium: run 'sudo apt-get install chromium'."; \
		fi; \
	fi

test: install browser ## Lint, then the whole test suite
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/pytest

# The benchmark needs PostgreSQL and a real broker; these are this machine's.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/agentops_bench
BENCH_BROKER_URL ?= redis://127.0.0.1:6379/7

bench-db:
	@psql "$(BENCH_DATABASE_URL)" -tAc 'SELECT 1' >/dev/null 2>&1 || \
		psql "$$(echo '$(BENCH_DATABASE_URL)' | sed 's|/[^/]*$$|/postgres|')" \
			-c "CREATE DATABASE $$(basename '$(BENCH_DATABASE_URL)')"
	DATABASE_URL=$(BENCH_DATABASE_URL) $(VENV_BIN)/python manage.py migrate --no-input -v0

bench: install bench-db ## Throughput and latency against the floor (PostgreSQL + Redis)
	DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
		$(VENV_BIN)/python manage.py bench

lint: install ## ruff check and ruff format --check
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .

format: install ## Fix what ruff can fix, and format
	$(VENV_BIN)/ruff check --fix .
	$(VENV_BIN)/ruff format .

bench-sql: install bench-db ## The floor, agentops' SQL replayed alone, and agentops, same run
	DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
		$(VENV_BIN)/python manage.py bench_sql_alone

bench-compare: install bench-db ## A commit against this checkout, alternated (BASE=HEAD; PAIRS, TICKETS)
	DATABASE_URL=$(BENCH_DATABASE_URL) $(VENV_BIN)/python manage.py bench_compare \
		--base $${BASE:-HEAD} --pairs $${PAIRS:-4} --tickets $${TICKETS:-300}

bench-web: install bench-db ## Seed 100k runs / ~1M spans, print p50/p95 per trace page
	DATABASE_URL=$(BENCH_DATABASE_URL) \
		$(VENV_BIN)/python manage.py seed_traces --runs $${BENCH_RUNS:-100000} --top-up
	DATABASE_URL=$(BENCH_DATABASE_URL) \
		$(VENV_BIN)/python manage.py bench_web --requests $${BENCH_REQUESTS:-40}

# The chaos run: its own database and Redis db on this machine's servers.
CHAOS_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/agentops_chaos
CHAOS_BROKER_URL ?= redis://127.0.0.1:6379/9
CHAOS_ARGS ?= --tickets 1000 --workers 3 --kill-every 4 --timeout-after-commit 0.04 --p429 0.02 --p500 0.02 --legacy-provider

chaos: install ## 1,000 tickets, workers SIGKILLed every 4 s, provider faults: lost/duplicates/silent must be 0
	@psql "$(CHAOS_DATABASE_URL)" -tAc 'SELECT 1' >/dev/null 2>&1 || \
		psql "$$(echo '$(CHAOS_DATABASE_URL)' | sed 's|/[^/]*$$|/postgres|')" \
			-c "CREATE DATABASE $$(basename '$(CHAOS_DATABASE_URL)')"
	DATABASE_URL=$(CHAOS_DATABASE_URL) $(VENV_BIN)/python manage.py migrate --no-input -v0
	DATABASE_URL=$(CHAOS_DATABASE_URL) CELERY_BROKER_URL=$(CHAOS_BROKER_URL) \
		$(VENV_BIN)/python manage.py chaos $(CHAOS_ARGS)
