# shop — `make help` lists the targets. Tools are installed by deploy/bootstrap.sh into a
# per-user cache and reached through .tools/ (git-ignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
UV      := .tools/bin/uv
PY      := .venv/bin/python
PROTOS  := $(shell find proto -name '*.proto')
GEN     := libs/protos/src
STAMP   := $(GEN)/shop/.generated

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: bootstrap
bootstrap: ## Install every tool (uv, Python deps, Kafka, Jaeger + UI, Prometheus, grpcurl, ghz, buf, PostgreSQL, Chromium, helm, kubeconform)
	deploy/bootstrap.sh

.venv/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) deploy/versions.env
	deploy/bootstrap.sh python
	@touch $@

.PHONY: install
install: .venv/.synced $(STAMP) ## Python workspace (.venv) and generated protobuf code

.PHONY: proto
proto: $(STAMP) ## Generate Python code and type stubs from proto/ into libs/protos

$(STAMP): $(PROTOS) .venv/.synced
	rm -rf $(GEN)/shop && mkdir -p $(GEN)
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto -I$$($(PY) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))') \
	  --python_out=$(GEN) --grpc_python_out=$(GEN) --mypy_out=$(GEN) --mypy_grpc_out=$(GEN) $(PROTOS)
	find $(GEN)/shop -type d -exec touch {}/__init__.py \;
	touch $(GEN)/shop/py.typed $@

.PHONY: certs
certs: install ## Local CA and certificates for SHOP_TLS=1 in var/certs (makes those missing)
	$(PY) -m shop_devstack certs

.PHONY: run
run: install ## Start Kafka, Jaeger, Prometheus and the three services (SHOP_TLS=1: mutual TLS); Ctrl-C stops all
	deploy/bootstrap.sh kafka jaeger jaeger-ui prometheus grpcurl
	$(PY) -m shop_devstack run

.PHONY: run-cluster
run-cluster: install ## The same system as a cluster: 3 Kafka brokers, 2 replicas per service, PostgreSQL
	deploy/bootstrap.sh kafka jaeger jaeger-ui prometheus grpcurl postgres
	SHOP_TOPOLOGY=cluster $(PY) -m shop_devstack run

.PHONY: chaos
chaos: install ## Faults under load on a stack of its own, then a verdict: [TOPOLOGY=cluster|single] [RATE=10]
	deploy/bootstrap.sh kafka jaeger prometheus postgres
	$(PY) -m shop_devstack chaos --topology "$(or $(TOPOLOGY),cluster)" --rate "$(or $(RATE),10)"

.PHONY: fuzz
fuzz: install ## Hostile requests to every RPC and poison events, on a stack of its own, then a verdict: [REQUESTS=10000] [SEED=n]
	deploy/bootstrap.sh kafka jaeger prometheus
	$(PY) -m shop_devstack fuzz --requests "$(or $(REQUESTS),10000)" $(if $(SEED),--seed "$(SEED)")

.PHONY: test
test: install ## Unit, integration and e2e tests (private Kafka, Jaeger, Prometheus, PostgreSQL)
	deploy/bootstrap.sh kafka jaeger jaeger-ui prometheus grpcurl ghz postgres benchtools chromium
	$(PY) -m pytest libs/chassis/tests libs/devstack/tests services tests loadtest/tests --ignore=tests/deploy

.PHONY: test-unit
test-unit: install ## Unit tests only (no Kafka, no database server)
	$(PY) -m pytest services/*/tests/unit libs/chassis/tests/unit libs/devstack/tests/unit loadtest/tests/unit tests/bootstrap

.PHONY: test-integration
test-integration: install ## Integration tests: platform, make run, repositories and budgets on SQLite + PostgreSQL
	deploy/bootstrap.sh kafka jaeger jaeger-ui prometheus grpcurl ghz postgres
	$(PY) -m pytest libs/chassis/tests/integration libs/devstack/tests services/*/tests/integration

.PHONY: test-e2e
test-e2e: install ## End-to-end tests: the three services on real Kafka, Jaeger, Prometheus
	deploy/bootstrap.sh kafka jaeger jaeger-ui prometheus grpcurl ghz benchtools chromium
	$(PY) -m pytest tests/e2e

.PHONY: deploy-check
deploy-check: install ## Validate deploy/ offline: helm lint + template, kubeconform, the Compose file, tests/deploy
	deploy/bootstrap.sh helm kubeconform k8s-schemas compose-config
	deploy/check.sh

.PHONY: deploy-files
deploy-files: install ## Regenerate the service lists in deploy/ (Compose, Helm values, targets) from the registry
	$(PY) -m shop_devstack.deploy_files

COMPOSE := docker compose -f deploy/compose/compose.yaml

.PHONY: compose-up
compose-up: ## Build the image and start the stack on Docker Compose (needs Docker Engine with Compose v2)
	@docker compose version >/dev/null 2>&1 || { echo "compose-up needs Docker Engine with the Compose v2 plugin (docker compose); none here"; exit 2; }
	$(COMPOSE) up --build --detach --wait

.PHONY: compose-down
compose-down: ## Stop and remove the Compose stack and its data
	@docker compose version >/dev/null 2>&1 || { echo "compose-down needs Docker Engine with the Compose v2 plugin (docker compose); none here"; exit 2; }
	$(COMPOSE) down --remove-orphans

.PHONY: demo
demo: install ## Place a few orders against a running `make run` and print what happened
	$(PY) -m shop_devstack demo

.PHONY: bench
bench: install ## Load-test the running stack (`make run` first) beside anchors, judge SLOs; ARGS="..."
	deploy/bootstrap.sh ghz benchtools
	$(PY) -m loadtest $(ARGS)

.PHONY: bench-compare
bench-compare: install ## Two bench runs side by side, regressions over 10 % flagged: A=<run> B=<run>
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make bench-compare A=<run id> B=<run id or latest>"; exit 2; }
	$(PY) -m loadtest.compare "$(A)" "$(B)"

.PHONY: profile
profile: install ## Flame graph of a running service under load: make profile SERVICE=orders [SECONDS=15]
	@test -n "$(SERVICE)" || { echo "usage: make profile SERVICE=orders|inventory|notifier [SECONDS=15]"; exit 2; }
	deploy/bootstrap.sh ghz
	$(PY) -m shop_devstack profile "$(SERVICE)" --seconds "$(or $(SECONDS),15)"

.PHONY: lint
lint: install ## ruff + mypy on our code, buf lint on proto/, promtool checks and rule tests
	deploy/bootstrap.sh buf prometheus
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy libs/chassis/src libs/devstack/src services/*/src loadtest
	cd proto && ../.tools/bin/buf lint
	cd deploy/prometheus && ../../.tools/bin/promtool check config prometheus.yml \
	  && ../../.tools/bin/promtool test rules rules/tests.yml

.PHONY: fmt
fmt: install ## Format and auto-fix with ruff
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

.PHONY: clean
clean: ## Remove var/ (Kafka data, databases, logs), .venv, generated code, caches in the tree
	rm -rf var .venv $(GEN)/shop .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: clean-cache
clean-cache: ## Also remove the per-user tool cache (next bootstrap downloads/builds again)
	rm -rf "$${SHOP_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/shop}" .tools

.PHONY: trace
trace: install ## Print a trace as a waterfall: make trace ID=<trace id or order id>
	@test -n "$(ID)" || { echo "usage: make trace ID=<trace id or order id>"; exit 2; }
	$(PY) -m shop_devstack trace "$(ID)"

.PHONY: story
story: install ## Everything about one order: state, traces, every service's log lines, notifications: make story ID=<order id>
	@test -n "$(ID)" || { echo "usage: make story ID=<order id>"; exit 2; }
	@$(PY) -m shop_devstack story "$(ID)"

.PHONY: logs
logs: install ## Follow every process's log, merged: [SERVICE=orders,kafka] [LEVEL=warning] [ID=<trace or order id>] [FORMAT=json] [SINCE=10m] [FOLLOW=0]
	@$(PY) -m shop_devstack logs $(if $(SERVICE),--service "$(SERVICE)") $(if $(LEVEL),--level "$(LEVEL)") \
	  $(if $(ID),--id "$(ID)") $(if $(FORMAT),--format "$(FORMAT)") $(if $(SINCE),--since "$(SINCE)") \
	  $(if $(filter 0 no false,$(FOLLOW)),--no-follow)

.PHONY: status
status: install ## Processes, health, RED per method, lag, outbox, dead letters, coloured by the alerts; non-zero when red: [WATCH=1]
	@$(PY) -m shop_devstack status $(if $(filter-out 0 no false,$(WATCH)),--watch)
