# Two commands for a newcomer: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs format lock audit bench clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23"
	$(BIN)/python -m pip install -q -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -f demo-results.jsonl
	$(BIN)/provisioner run jobs/demo-onboarding.jsonl jobs/mixed-networking.yaml jobs/platform-teams.json \
		--sandbox --sandbox-faults error_502=0.03,error_503=0.05,reset_after_commit=0.03,latency_ms=20,jitter_ms=30,seed=7 \
		--results demo-results.jsonl --summary demo-summary.json

test: install
	$(BIN)/python -m pytest --cov --cov-report=term

lint: install
	$(BIN)/ruff format --check provisioner tests bench
	$(BIN)/ruff check provisioner tests bench
	$(BIN)/mypy provisioner
	$(BIN)/lint-imports

# The manual (docs/, mkdocs-material); --strict turns a broken link, anchor or nav entry
# into a failure. (No --quiet: mkdocs 1.6 then drops the warnings strict mode counts.)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

format: install
	$(BIN)/ruff format provisioner tests bench
	$(BIN)/ruff check --fix provisioner tests bench

# Known vulnerabilities in every pinned dependency (pip-audit, PyPI's advisory data).
# --strict: a dependency that could not be checked is a failure, not a silent pass.
audit: install
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		-r requirements.lock -r requirements-dev.lock

# Re-pin every dependency after changing pyproject.toml; commit both lock files.
# requirements.lock: what the package needs at run time (the Docker image installs it).
# requirements-dev.lock: that plus the test, lint and build tools (make install).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install -q "pip>=23" && .lockenv/bin/python -m pip install -q .
	.lockenv/bin/python -m pip freeze | grep -v '^provisioner' > requirements.lock
	.lockenv/bin/python -m pip install -q -c requirements.lock ".[dev]" hatchling editables
	.lockenv/bin/python -m pip freeze | grep -v '^provisioner' > requirements-dev.lock
	rm -rf .lockenv

# The benchmark suite (README "Performance"); bench/ holds more, each run on its own.
bench: install
	$(BIN)/python bench/bench_suite.py

clean:
	rm -rf $(VENV) .site .pytest_cache .mypy_cache .ruff_cache .coverage demo-results.jsonl demo-summary.json
