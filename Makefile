# Fresh clone: `make demo` runs the main job on the embedded default, `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/clustersum
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# two pytest-xdist workers, each with its own test database and Redis database (15 and 14);
# drills, the stack and the multi-process rate-limit tests run one after another on one of them
PYTEST_XDIST ?= -p tests.support.xdist_isolation -n 2 --dist loadgroup

.PHONY: install demo test lint services bench up

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Embedded default: SQLite file, eager Celery, the offline extractive provider, the built-in
# real datasets: clustering, summaries and judging. A second `make demo` is served from the cache.
demo: install
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py migrate --noinput --verbosity 0
	env -u DATABASE_URL -u REDIS_URL -u LLM_PROVIDER $(PY) manage.py run_pipeline --dataset hpo-ndd
	env -u DATABASE_URL -u REDIS_URL -u LLM_PROVIDER $(PY) manage.py run_pipeline --dataset go-ndd

services:
	bash scripts/services-up

# Real PostgreSQL and Redis; integration tests start a Celery worker in the test process; the
# browser test drives Debian's chromium (installed if missing).
test: install services
	bash scripts/ensure-chromium
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_XDIST)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

bench: install
	$(PY) bench/clustering.py

# The whole stack in the foreground (README, "Production"): PostgreSQL and Redis started if
# stopped, migrate, collectstatic, then gunicorn, a Celery worker and beat under honcho;
# Ctrl-C stops them all. PORT (default 8000), DATABASE_URL and REDIS_URL may be overridden.
up: install
	VENV=$(VENV) bash scripts/up
