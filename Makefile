# The two commands that set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz system-deps bench clean proto

$(STAMP): pyproject.toml src/hushflow/flow/_wiredict.c src/hushflow/flow/_jsonpb_proof.c
	@command -v cc >/dev/null 2>&1 || echo "note: no C compiler (cc): hushflow installs without its C module, slower on gRPC sources"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: create the environment, install, run hushflow's main job on the bundled example
demo: $(STAMP)
	@echo "== 1. hushflow lint: the FQDN deny as the team wrote it (Cilium cannot run it) =="
	-$(BIN)/hushflow lint examples/telemetry-block
	@echo
	@echo "== 2. hushflow compile: what Cilium does run (toCIDRSet + CiliumCIDRGroup, DNS blocks) =="
	$(BIN)/hushflow compile examples/telemetry-block --out hushflow-demo/compiled \
	  --flows examples/telemetry-block/flows.jsonl --no-resolve --clock flows
	@echo
	@echo "== 3. hushflow run: the main job, replaying the example's recorded Hubble flows =="
	$(BIN)/hushflow run --metrics-address 127.0.0.1:0 --out hushflow-demo/groups --events file:hushflow-demo/events.jsonl
	@echo
	@echo "== 4. only the drop nobody planned is left once drops carry their rule's tag =="
	$(BIN)/hushflow observe --input-file examples/telemetry-block/flows.jsonl --enrich examples/telemetry-block \
	  --verdict DROPPED --not --cel-expression "'app-explicit-traffic-blocked' in _flow.policy_log"
	@echo
	@echo "== 5. close the loop: the fix for that drop, verified against the recorded flows, applied to a copy =="
	rm -rf hushflow-demo/proposed && cp -r examples/telemetry-block/policies hushflow-demo/proposed
	$(BIN)/hushflow suggest --policies hushflow-demo/proposed --input-file examples/telemetry-block/flows.jsonl \
	  --action allow --write
	@echo
	@echo "== 6. hushflow replay: what that change does to every recorded flow (a pull-request check) =="
	$(BIN)/hushflow replay --policies examples/telemetry-block/policies --proposed hushflow-demo/proposed \
	  --input-file examples/telemetry-block/flows.jsonl --per-flow

# Real components the tests run against: Unbound and BIND 9 (RPZ checks) and Prometheus/promtool.
SYSTEM_TOOLS := unbound named named-checkconf named-checkzone promtool prometheus
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    unbound bind9 prometheus >/dev/null; \
	fi

## test: install what the tests need, then ruff, mypy, the import contracts (rules of the house) and pytest
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests benchmarks deploy examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

## fuzz: the fuzz targets of tests/fuzz for FUZZ_SECONDS in all (default 600), shared between the targets;
## prints executions and failures per target (make test runs them briefly: the ci profile). FUZZ_SEED repeats a run.
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	HUSHFLOW_FUZZ=long FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest tests/fuzz -m fuzz -p no:cacheprovider

## proto: regenerate src/hushflow/proto/*_pb2.py(i) and *_pb2_grpc.py from the .proto files (needs grpcio-tools, in the test extra)
PROTOS := src/hushflow/proto/flow.proto src/hushflow/proto/relay.proto src/hushflow/proto/observer.proto src/hushflow/proto/peer.proto
PROTOC := $(BIN)/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src
# Only observer.proto and peer.proto declare a service; the gRPC plugin would write empty modules for the others.
GRPC_PROTOC := $(BIN)/python -m grpc_tools.protoc -I src --grpc_python_out=src src/hushflow/proto/observer.proto src/hushflow/proto/peer.proto
# The generated gRPC stubs are untyped and not lint-clean: the header excludes them from ruff and mypy.
proto: $(STAMP)
	$(PROTOC) $(PROTOS)
	$(GRPC_PROTOC)
	for f in src/hushflow/proto/*_pb2.py src/hushflow/proto/*_pb2.pyi; do \
	  { echo "# Generated from the .proto next to it by \`make proto\`: $(PROTOC) $(PROTOS)"; cat $$f; } > $$f.tmp && mv $$f.tmp $$f; \
	done
	for f in src/hushflow/proto/*_pb2_grpc.py; do \
	  { echo "# Generated from the .proto next to it by \`make proto\`: $(GRPC_PROTOC)"; \
	    echo "# ruff: noqa"; echo "# mypy: ignore-errors"; cat $$f; } > $$f.tmp && mv $$f.tmp $$f; \
	done

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_lint.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
