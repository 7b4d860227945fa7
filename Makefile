# The README's commands. `make demo` and `make test` each set up what they need first.
VENV   ?= .venv
BIN    := $(VENV)/bin
# Stage commands in dvc.yaml (`d2v ...`) must resolve to the project's venv.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup demo test bench lock clean

setup:  ## Debian data packages + .venv from constraints.txt (idempotent, seconds when nothing changed)
	@bash infra/setup.sh

demo: setup  ## the whole pipeline on the embedded default (CPU, minutes), published to artifacts/
	$(BIN)/dvc repro
	@# One immutable run per pipeline state (named after dvc.lock): a repeated demo publishes nothing new.
	@run=demo-$$(sha256sum dvc.lock | cut -c1-12); \
	if $(BIN)/d2v artifacts ls | grep -q "$$run"; then echo "artifacts: $$run already published"; \
	else $(BIN)/d2v artifacts publish models metrics reports/validation reports/benchmark.md \
		reports/benchmark.html dvc.lock params.yaml --run-id $$run; fi
	@$(BIN)/python -m pipelines.demo_summary

test: setup  ## the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup  ## performance scripts: print tables, write benchmarks/results/*.json
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lock:  ## regenerate constraints.txt from the current .venv (after changing pyproject.toml)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^d2v' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
