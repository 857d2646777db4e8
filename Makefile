# crmkit: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
DEMO_DIR ?= var/demo
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-fast bench lint clean

# Everything the project needs, from its own files: uv (from PyPI), the workspace
# (core + plugins + examples, editable) pinned by uv.lock.
$(BIN)/.installed: pyproject.toml uv.lock $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	UV_PYTHON=$(PYTHON) $(UV) sync --all-packages --group dev --frozen
	touch $@

install: $(BIN)/.installed

demo: install
	@test -f $(DEMO_DIR)/crmkit.toml || $(BIN)/crmkit init $(DEMO_DIR)
	$(BIN)/crmkit --config $(DEMO_DIR) db upgrade
	@$(BIN)/crmkit --config $(DEMO_DIR) user list | grep -q . || \
		$(BIN)/crmkit --config $(DEMO_DIR) demo basic
	$(BIN)/crmkit --config $(DEMO_DIR) serve --host 127.0.0.1 --port 8000

test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test-fast: install
	$(BIN)/pytest -x -q --crmkit-db=sqlite -m "not slow"

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check src tests plugins examples benchmarks
	$(BIN)/ruff format --check src tests plugins examples benchmarks

clean:
	rm -rf $(VENV) var build dist
