# vision-zero: the two commands of the README, plus helpers. Every target sets up first
# (idempotent: a second run installs nothing).
.PHONY: setup lock run test bench lint vllm-env clean

setup:
	@bash scripts/setup.sh

# Re-resolve requirements/lock.txt (after changing pyproject.toml or the constraints); the
# next `make setup` installs it.
lock: setup
	@bash scripts/lock.sh

run: setup
	@bash scripts/run.sh

test: setup
	@bash scripts/test.sh

bench: setup
	@bash -c 'source scripts/env.sh && for b in bench/bench_*.py; do .venv/bin/python $$b; done'

lint: setup
	@.venv/bin/ruff check visionzero flows tasks tests bench scripts

# GPU machines: a separate environment for the vLLM generation worker (vLLM pins its own
# torch, fastapi and transformers, which clash with Prefect's). Then set
# rollout.backend=worker, rollout.worker_engine=vllm, rollout.worker_python=.venv-vllm/bin/python.
vllm-env:
	@python3 -m venv .venv-vllm && .venv-vllm/bin/pip install -q "vllm>=0.31,<0.32" && .venv-vllm/bin/pip install -q --no-deps -e .

clean:
	rm -rf runs .cache mlflow.db
