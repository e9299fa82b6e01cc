# vision-zero: the two commands of the README, plus helpers. Every target sets up first
# (idempotent: a second run installs nothing).
.PHONY: setup run test bench lint clean

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

test: setup
	@bash scripts/test.sh

bench: setup
	@bash -c 'source scripts/env.sh && for b in bench/bench_*.py; do .venv/bin/python $$b; done'

lint: setup
	@.venv/bin/ruff check visionzero flows tasks tests bench

clean:
	rm -rf runs .cache mlflow.db
