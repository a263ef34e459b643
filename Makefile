# The two commands of the README: `make demo` and `make test`. Both create the
# virtualenv and install what they need on first use, and are safe to run again.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15


.PHONY: production
.PHONY: install demo test test-fast test-sqlite test-postgres browser-deps lint format clean-demo loadtest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make demo PORT=8101 SEED=3 READERS=10 RESET=1 NO_MODELS=1, or any option in DEMO_ARGS.
DEMO_ARGS ?=
DEMO_OPTIONS = $(if $(PORT),--port $(PORT)) $(if $(SEED),--seed $(SEED)) \
	$(if $(READERS),--readers $(READERS)) $(if $(RESET),--reset) $(if $(NO_MODELS),--no-models) \
	$(DEMO_ARGS)
demo: $(STAMP)
	$(PY) manage.py demo $(strip $(DEMO_OPTIONS))

# The whole suite on the embedded SQLite, then the tests that must also hold on
# PostgreSQL (constraints, concurrency) against the real server.
test: test-sqlite test-postgres

# Browser tests drive Debian's chromium, the translation tests GNU gettext's msgfmt;
# install them when missing (needs root, as in CI).
browser-deps:
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; \
	command -v msgfmt >/dev/null || missing="$$missing gettext"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "The tests need Debian's$$missing: sudo apt-get install$$missing"; exit 1; fi; \
	fi

# axe-core, which the accessibility tests inject into each page, from package.json's
# exact pin (no lock file: .npmrc); Debian's npm is installed when missing, as above.
node_modules/axe-core/axe.min.js: package.json
	@command -v npm >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; \
	else echo "The tests need Debian's npm: sudo apt-get install npm"; exit 1; fi; }
	npm install --no-audit --no-fund
	touch $@

test-sqlite: $(STAMP) browser-deps node_modules/axe-core/axe.min.js
	REDIS_TEST_URL=$(REDIS_TEST_URL) $(PY) -m pytest -n 2 --dist loadfile

# The inner loop: no slow test, no browser, no PostgreSQL or Redis server; in parallel.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow and not browser and not redis and not postgres_only"

test-postgres: $(STAMP)
	DATABASE_URL=$(PG_TEST_URL) REDIS_TEST_URL=$(REDIS_TEST_URL) READERSTUDY_REQUIRE_SERVICES=1 \
		$(PY) -m pytest -m postgres

# The production-shaped stack (gunicorn + Celery workers) from environment variables;
# see the README's "Production set-up".
production: $(STAMP)
	bin/production

# The reference-size study (200 cases) under locust against gunicorn, PostgreSQL, Redis
# and a Celery worker: the stack's start, saturation (280 readers answering 20 cases
# each without a pause) against the /health/ ceiling, and a realistic peak (280 readers,
# 8 s per case, 20 cases each); counts every answer, prints the latencies and the goals.
# Smaller: make loadtest LOADTEST_ARGS="--readers 40 --peak-readers 40".
LOADTEST_ARGS ?=
loadtest: $(STAMP)
	@$(PY) -c 'import locust' 2>/dev/null || $(PY) -m pip install --quiet -e '.[dev]'
	$(PY) bench/loadtest.py --pg-url $(PG_TEST_URL) $(LOADTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-demo:
	rm -rf var/
