# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench bench-scale soak lint migrate clean venv

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
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
