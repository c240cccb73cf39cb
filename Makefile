# em-orchestrator: the two commands of the README, and a few helpers.
#   make demo   - create .venv, install everything, run the main job on the embedded default
#   make test   - install test extras and system packages, lint (ruff, mypy), start test infrastructure, run pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv install-test system-deps infra-up infra-down lint bench-quick clean

$(PY):
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: installing python3-venv"; \
	  apt-get -o DPkg::Lock::Timeout=600 install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml $(wildcard plugins/*/pyproject.toml) tests/plugin_testkit/pyproject.toml
	$(PIP) install -q -e '.[postgres]'
	@for p in plugins/*/; do [ -f "$$p/pyproject.toml" ] && $(PIP) install -q -e "$$p" || true; done
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --project demo-project

install-test: $(STAMP)
	$(PIP) install -q -e '.[test,postgres,web]'
	$(PIP) install -q -e tests/plugin_testkit

SERVICES := postgres slurm sge sshd

system-deps:
	bash tests/infra/system-deps.sh postgres slurm slurm-accounting sge ssh relion browser

infra-up: system-deps
	@for s in $(SERVICES); do SLURM_ACCOUNTING=1 bash tests/infra/$$s.sh start || exit 1; done

infra-down:
	-@for s in $(SERVICES); do bash tests/infra/$$s.sh stop; done

# Each service script prints the `export` lines its clients need (SLURM_CONF, SGE_ROOT, ...).
# CI=1 by default: `make test` provides every service, so a skipped test means a broken set-up and
# fails (conftest.py). `make test CI=` lets the service tests skip (only the allow-list does in CI).
CI ?= 1
test: lint infra-up
	@eval "$$(for s in $(SERVICES); do bash tests/infra/$$s.sh env; done)" && \
	  CI='$(CI)' $(PY) -m pytest $(PYTEST_ARGS)

# ruff on everything, mypy on the framework and the plugins: `make test` (so CI) runs it first
lint: install-test
	$(VENV)/bin/ruff check orchestrator tests bench plugins conftest.py
	$(VENV)/bin/mypy orchestrator plugins/emtools/emtools plugins/relion/relion_plugin

bench-quick: $(STAMP)
	$(PY) bench/sets.py --quick
	$(PY) bench/web.py --quick

clean:
	rm -rf $(VENV) demo-project .infra
