# crmkit: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
DEMO_DIR ?= var/denaq
PYTEST_WORKERS ?= 2
VENDOR := src/crmkit/web/static/vendor

.PHONY: install assets browser mailserver benchtools demo demo-carservice test test-fast bench lint clean

# Everything the project needs, from its own files: uv (from PyPI), the workspace
# (core + plugins + examples, editable) pinned by uv.lock.
$(BIN)/.installed: pyproject.toml uv.lock $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml)
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	UV_PYTHON=$(PYTHON) $(UV) sync --all-packages --group dev --frozen
	touch $@

# Front-end libraries of the web UI, from the npm registry pinned by package-lock.json,
# copied into the Python package (gitignored; the wheel ships them).
$(VENDOR)/versions.json: package.json package-lock.json scripts/build-web-assets.mjs
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build

assets: $(VENDOR)/versions.json

# Debian's Chromium for the end-to-end tests (Playwright drives it; no browser downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: end-to-end tests will be skipped (run: apt-get install -y chromium)"; }

# Debian's Dovecot for the mail plugin's tests (they start it themselves with a config of their
# own on loopback; no system service is used).
mailserver:
	@command -v dovecot >/dev/null 2>&1 || test -x /usr/sbin/dovecot || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; } || \
		echo "dovecot is not installed: mail server tests will be skipped (run: apt-get install -y dovecot-imapd)"; }

# wrk loads the API in `make bench` (Debian's package; benchmarks only, never CI)
benchtools:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		echo "wrk is not installed: the API benchmark will be skipped (run: apt-get install -y wrk)"; }

install: $(BIN)/.installed assets

# The dealer-acquisition CRM of examples/denaq, with a few thousand generated dealers.
demo: install
	@test -f $(DEMO_DIR)/crmkit.toml || { $(BIN)/crmkit init $(DEMO_DIR) --plugin denaq --plugin mail && \
		printf '\n[web]\n# where the demo is served: the unsubscribe links of mailings start with it\nbase_url = "http://127.0.0.1:8000"\n' >> $(DEMO_DIR)/crmkit.toml && \
		printf '\n[screening]\n# a dealer is one company: a new lead at a domain the base knows waits for confirmation\ndomain_blocks = true\n' >> $(DEMO_DIR)/crmkit.toml; }
	$(BIN)/crmkit --config $(DEMO_DIR) db upgrade
	@$(BIN)/crmkit --config $(DEMO_DIR) user list | grep -q . || \
		$(BIN)/crmkit --config $(DEMO_DIR) demo denaq
	@echo "sign in at http://127.0.0.1:8000 as admin, lead1, lead2 or agent1..agent5 (password: demo-password)"
	$(BIN)/crmkit --config $(DEMO_DIR) serve --host 127.0.0.1 --port 8000

# The car service example (examples/carservice): a demo year for two branches, on port 8001.
CARSERVICE_DIR ?= var/demo-carservice
demo-carservice: install
	@test -f $(CARSERVICE_DIR)/crmkit.toml || { $(BIN)/crmkit init $(CARSERVICE_DIR) --no-migrate \
		--plugin finance --plugin booking --plugin mail --plugin carservice && \
		printf '\n[web]\n# where the demo is served: the unsubscribe links of mailings start with it\nbase_url = "http://127.0.0.1:8001"\n' >> $(CARSERVICE_DIR)/crmkit.toml; }
	$(BIN)/crmkit --config $(CARSERVICE_DIR) db upgrade
	@$(BIN)/crmkit --config $(CARSERVICE_DIR) user list | grep -q . || \
		$(BIN)/crmkit --config $(CARSERVICE_DIR) demo carservice
	$(BIN)/crmkit --config $(CARSERVICE_DIR) serve --host 127.0.0.1 --port 8001

test: install browser mailserver
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25

test-fast: install
	$(BIN)/pytest -x -q --crmkit-db=sqlite -m "not slow"

bench: install mailserver benchtools
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check src tests plugins examples benchmarks
	$(BIN)/ruff format --check src tests plugins examples benchmarks

clean:
	rm -rf $(VENV) var build dist node_modules $(VENDOR)
