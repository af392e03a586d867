# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench bench-scale soak lint migrate clean venv vendor browser screenshots

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

## make run: the API (gunicorn), a worker on every queue, beat and Flower; embedded PostgreSQL + Redis
## under ./var/ unless DATABASE_URL / REDIS_URL are set.
run: $(STAMP)
	$(BIN)/python -m devstack run

## make test: the whole suite against real PostgreSQL and Redis (embedded throwaway ones unless
## DATABASE_URL / REDIS_URL are set).
test: lint browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make browser: Debian's chromium for the browser tests (tests/browser/, Playwright with executable_path);
## installed with apt when missing and we are root; never `playwright install` (no browser download).
CHROMIUM := /usr/bin/chromium
browser: $(CHROMIUM)
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y chromium || { apt-get update -q && apt-get install -y chromium; }; \
	else echo "make: the browser tests need $(CHROMIUM): run 'sudo apt-get install -y chromium'" >&2; exit 1; fi

## make vendor: rebuild the vendored browser files from the versions pinned in package.json / package-lock.json
## (npm registry): Chart.js for the dashboard, swagger-ui-dist for the API explorer at /docs, axe-core for the
## accessibility checks of the browser tests.
vendor:
	npm ci --no-audit --no-fund
	cp node_modules/chart.js/dist/chart.umd.js app/static/vendor/chart.umd.js
	cp node_modules/chart.js/LICENSE.md app/static/vendor/chart.js-LICENSE.md
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
	   node_modules/swagger-ui-dist/LICENSE node_modules/swagger-ui-dist/NOTICE app/static/vendor/swagger-ui/
	cp node_modules/axe-core/axe.min.js tests/browser/vendor/axe.min.js
	cp node_modules/axe-core/LICENSE tests/browser/vendor/axe-core-LICENSE

## make screenshots: regenerate docs/screenshots/*.png (developer and operator views) from the browser tests.
screenshots: $(STAMP) browser
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest tests/browser -q -p no:randomly -k screenshots

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## make bench-scale: ingest and end-to-end latency on an empty database vs after seeding a large history
## (COPY; 1,000 developers x 10,000 events + one with 1,000,000). SCALE_ARGS=--quick for a small one.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -p no:randomly $(PYTEST_ARGS)

## make lint: ruff, and mypy (strict on activity/ and core/; see [mypy] in setup.cfg). Run by make test.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/alembic upgrade head

clean:
	rm -rf $(VENV) var build *.egg-info
