# Two commands for a newcomer: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs format lock audit bench clean

# Every dependency is installed from the hashed dev lock (--require-hashes: a file whose
# hash is not in the lock is refused). pip first, alone: the pip that venv bundles with an
# older Python misreads extras (coverage[toml]) in hash-checking mode. The project itself
# is local source, so it goes in separately, editable and without dependencies.
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	awk '/^pip==/,!/\\$$/' requirements-dev.lock > $(VENV)/pip.lock
	$(BIN)/python -m pip install -q --require-hashes -r $(VENV)/pip.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
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

# Re-pin every dependency after changing pyproject.toml, with hashes; commit the lock files.
# uv keeps the versions already in a lock unless asked: `make lock LOCK_FLAGS=--upgrade`
# moves everything to the newest release (or --upgrade-package NAME, one package).
# requirements.lock: what the package needs at run time (the Docker image installs it).
# requirements-dev.lock: that plus the test, lint, lock and build tools (make install).
# requirements-build.lock: the build backend alone (the Docker image builds the wheel with it).
# Universal: one lock for every platform and Python >= 3.11 (markers pick the lines).
LOCK_FLAGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--native-tls --custom-compile-command "make lock" $(LOCK_FLAGS)
lock: install
	$(UV_COMPILE) pyproject.toml --extra speedups -o requirements.lock
	$(UV_COMPILE) pyproject.toml --extra speedups --extra dev -c requirements.lock -o requirements-dev.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) - -c requirements-dev.lock -o requirements-build.lock

# The benchmark suite (README "Performance"); bench/ holds more, each run on its own.
bench: install
	$(BIN)/python bench/bench_suite.py

clean:
	rm -rf $(VENV) .site .pytest_cache .mypy_cache .ruff_cache .coverage demo-results.jsonl demo-summary.json
