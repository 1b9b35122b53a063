# agentgw: every target installs what it needs, so a fresh clone needs only Python 3.11, make and npm.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
GOOGLEAPIS := .tools/googleapis
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed-stamp

PROTOS := $(wildcard proto/agentgw/v1/*.proto)
PROMTOOL ?= promtool
RULE_FILES := $(wildcard deploy/prometheus/*.rules.yml) $(wildcard deploy/prometheus/*.alerts.yml)
RULE_TESTS := $(wildcard deploy/prometheus/tests/*.yml)

.PHONY: help install run run-with-emulator demo test lint fmt proto check-proto proto-deps emulator bench chaos clean rules ts-deps fleet

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e clients/python -e '.[dev]'
	touch $@

install: $(STAMP) ## create the virtualenv and install agentgw with its dev tools

run: $(STAMP) ## serve gRPC on 127.0.0.1:50051 and HTTP on :8080 (embedded emulator, state in var/emulator.json)
	$(BIN)/agentgw serve $(ARGS)

run-with-emulator: $(STAMP) ## the emulator (:8090) and the gateway as two processes, wired together
	BIN=$(BIN) tools/run-with-emulator.sh $(ARGS)

# PostgreSQL's server binaries come from Debian's postgresql package (.ci/run installs it).
fleet: $(STAMP) ## a throwaway PostgreSQL, the emulator (:8090) and two replicas (gRPC :50051/:50052, HTTP :8080/:8081) until Ctrl-C
	$(BIN)/python -m tools.fleet $(ARGS)

demo: $(STAMP) ## a live digital-human call on the emulator, its events printed as they arrive
	$(BIN)/python -m service.demo

emulator: $(STAMP) ## run the ZEGO emulator on its own (127.0.0.1:8090; ARGS="--state-file var/emulator-standalone.json")
	$(BIN)/python -m zego_emulator $(ARGS)

test: $(STAMP) $(TS_STAMP) check-proto rules ## install, check generated stubs and alert rules, run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

# promtool is Debian's `prometheus` package (.ci/run installs it). Without it, CI fails here and a
# developer's `make test` skips this step loudly.
rules: ## check the Prometheus rules and alerts with promtool and run their unit tests
	@if command -v $(PROMTOOL) >/dev/null 2>&1; then \
		echo "$(PROMTOOL) check rules $(RULE_FILES)"; \
		$(PROMTOOL) check rules $(RULE_FILES); \
		echo "$(PROMTOOL) test rules $(RULE_TESTS)"; \
		$(PROMTOOL) test rules $(RULE_TESTS); \
	elif [ -n "$${CI:-}" ] && [ "$${CI}" != false ]; then \
		echo "make rules: FAILED: promtool not found and CI is set; install it: apt-get install -y prometheus" >&2; \
		exit 1; \
	else \
		echo "################################################################################" >&2; \
		echo "## make rules: SKIPPED: promtool not found, the Prometheus rules are NOT checked." >&2; \
		echo "## Install it: sudo apt-get update && sudo apt-get install -y prometheus" >&2; \
		echo "## (see deploy/prometheus/README.md). CI installs it and fails without it." >&2; \
		echo "################################################################################" >&2; \
	fi

lint: $(STAMP) $(BUF) $(TS_STAMP) proto-deps ## ruff, mypy --strict, buf lint and format, tsc
	$(BIN)/ruff check service zego_emulator tests chaos clients tools
	$(BIN)/ruff format --check service zego_emulator tests chaos clients tools
	$(BIN)/mypy
	$(BUF) lint
	$(BUF) format -d --exit-code proto
	$(TS)/node_modules/.bin/tsc -p $(TS) --noEmit

fmt: $(STAMP) $(BUF) ## format Python and proto sources in place
	$(BIN)/ruff check --fix service zego_emulator tests chaos clients tools
	$(BIN)/ruff format service zego_emulator tests chaos clients tools
	$(BUF) format -w proto

# The TypeScript client's npm dependencies (protoc-gen-es, connect, tsc), pinned by its lockfile.
$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	npm ci --prefix $(TS) --no-audit --no-fund --silent
	touch $@

ts-deps: $(TS_STAMP) ## install the TypeScript client's npm dependencies

$(BUF):
	npm install --prefix .tools --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

# buf's registry is not reachable here, so the googleapis protos we import come from the
# googleapis-common-protos wheel that is installed anyway.
proto-deps: $(STAMP)
	@site=$$($(BIN)/python -c 'import google.api.field_behavior_pb2 as m, os; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))'); \
	mkdir -p $(GOOGLEAPIS)/google/api; \
	cp $$site/google/api/field_behavior.proto $(GOOGLEAPIS)/google/api/

proto: $(STAMP) $(BUF) $(TS_STAMP) proto-deps ## regenerate the committed Python and TypeScript stubs from proto/
	$(BIN)/python tools/genproto.py --out
	$(BUF) generate --template buf.gen.yaml

check-proto: $(STAMP) $(BUF) $(TS_STAMP) proto-deps ## fail if the committed stubs drift from proto/
	$(BIN)/python tools/genproto.py --check
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate --template buf.gen.yaml -o "$$tmp"; \
	if diff -ru $(TS)/src/gen "$$tmp/$(TS)/src/gen"; then echo "generated stubs in $(TS)/src/gen match proto/"; \
	else echo "stubs in $(TS)/src/gen are stale: run \`make proto\` and commit" >&2; exit 1; fi

bench: $(STAMP) ## run the benchmark harness (separate from make test)
	$(BIN)/python -m bench $(ARGS)

chaos: $(STAMP) ## kill -9, outages, upstream faults, resumes: agentgw vs ZEGO's view (separate from make test)
	$(BIN)/python -m chaos $(ARGS)

clean: ## remove the virtualenv, tools and caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache $(TS)/node_modules $(TS)/dist
