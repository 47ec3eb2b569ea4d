# vetcd — build and test. `make test` is what CI runs (through .ci/run).
SHELL    := bash
GO       ?= go
BIN      := bin
export GOTOOLCHAIN := local
export GOFLAGS     := -buildvcs=false
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
# Real servers the tests use (MinIO, a registry, helm, kube-apiserver): see hack/tools.
export VETCD_TEST_BIN := $(abspath $(BIN)/test)

.PHONY: all build test lint unit e2e e2e-kube image chaos chaos-record tools test-tools bench clean simulate

all: build

build: $(BIN)/vetcd

# Built as the Dockerfile builds it: static (no cgo), without the symbol
# table and DWARF (-s -w) and without local paths (-trimpath); about 30 MB
# less than a default build, and the binary the image ships is the one
# tested. Stack traces and pprof keep function names (pclntab stays);
# `go tool nm` needs the symbol table, so bench/footprint.sh builds its
# own unstripped copy.
$(BIN)/vetcd: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $@ ./cmd/vetcd

FORCE:

## test: everything CI checks: formatting, vet, staticcheck, unit and end-to-end tests, the chart on real pods.
test: lint unit e2e e2e-kube

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@# go.mod and go.sum say exactly what the code imports.
	$(GO) mod tidy -diff
	@# The rules link nothing but the standard library (DESIGN.md: plan is pure).
	@nonstd=$$($(GO) list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./internal/plan | grep -v '^github.com/vetcd/vetcd/internal/plan$$'); \
	  if [ -n "$$nonstd" ]; then echo "internal/plan must import the standard library only; it links:"; echo "$$nonstd"; exit 1; fi
	@# Clients are leaves, and config validation links no storage backend.
	@own=$$($(GO) list -deps ./internal/etcdclient | grep '^github.com/vetcd/vetcd/' | grep -v '^github.com/vetcd/vetcd/internal/etcdclient$$'); \
	  if [ -n "$$own" ]; then echo "internal/etcdclient must not import other vetcd packages; it links:"; echo "$$own"; exit 1; fi
	@be=$$($(GO) list -deps ./internal/config | grep -x -e 'github.com/minio/minio-go/v7' -e 'oras.land/oras-go/v2/registry/remote' -e 'github.com/vetcd/vetcd/internal/storage'); \
	  if [ -n "$$be" ]; then echo "internal/config must not link the storage backends (use internal/storage/storageurl); it links:"; echo "$$be"; exit 1; fi

## unit: pure decisions, config, pki, storage backends against real servers, in-process etcd.
unit: test-tools
	VETCD_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 15m $$($(GO) list ./... | grep -v -e /test/e2e -e /test/pods)

## simulate: the deterministic simulator (internal/sim) over SIM_SCHEDULES seeds from SIM_SEED, on
## both cores; prints `simulate: N schedules, M steps, V violations in T`. `make unit` runs its short
## run (TestSimulate's default, 20000 schedules) with the other packages' tests.
SIM_SCHEDULES ?= 1000000
SIM_SEED      ?= 1
simulate:
	@mkdir -p bench/out; set -o pipefail; \
	  $(GO) test -count=1 -timeout 30m -run '^TestSimulate$$' -v ./internal/sim -args -sim.schedules=$(SIM_SCHEDULES) -sim.seed=$(SIM_SEED) \
	  | tee sim.log | grep --line-buffered -E '^(simulate:|--- |ok|FAIL|panic)'; rc=$$?; \
	  { echo "## Deterministic simulation"; echo; \
	    echo "\`make simulate\` (SIM_SCHEDULES=$(SIM_SCHEDULES) SIM_SEED=$(SIM_SEED)), repository at $$(git rev-parse --short HEAD 2>/dev/null), $$(nproc) cores,"; \
	    echo "recorded $$(date -u '+%Y-%m-%d %H:%M UTC'); what it explores and checks: README, Development."; echo; \
	    echo '```'; grep -E '^simulate:' sim.log; echo '```'; } > bench/out/simulate.md; \
	  echo "wrote bench/out/simulate.md"; exit $$rc

## image: vetcd's OCI image as a docker-archive tarball (bin/image/vetcd.tar, vetcd.local/vetcd:dev),
## built from the Dockerfile's definition without a container engine (hack/image).
IMAGE_TAG ?= vetcd.local/vetcd:dev
image: build
	@mkdir -p $(BIN)/image
	cd hack/image && $(GO) run . -dockerfile ../../Dockerfile -binary ../../$(BIN)/vetcd -tag $(IMAGE_TAG) -out ../../$(BIN)/image/vetcd.tar

## e2e-kube: the chart on real pods: a single-node Kubernetes (hack/kube) started and stopped by
## test/pods, the seed's procedures run against it. Needs root.
e2e-kube: image test-tools
	@cd hack/image && CGO_ENABLED=0 $(GO) test -count=1 ./...
	@VETCD_REQUIRE_TOOLS=1 VETCD_IMAGE=$(abspath $(BIN)/image/vetcd.tar) $(GO) test -count=1 -timeout 30m -v ./test/pods/ 2>&1 | tee e2e-kube.log \
	  | grep --line-buffered -E '^(--- |PASS|FAIL|ok|panic|\s+[a-z_]+_test\.go:[0-9]+:|pods:)'; \
	  rc=$${PIPESTATUS[0]}; if [ $$rc -ne 0 ]; then echo "--- e2e-kube failed; the last lines of e2e-kube.log:"; tail -n 300 e2e-kube.log; fi; exit $$rc

## e2e: the built vetcd binary as separate processes, with real faults.
e2e: build test-tools
	@VETCD_REQUIRE_TOOLS=1 VETCD_BIN=$(abspath $(BIN)/vetcd) $(GO) test -count=1 -timeout 40m -v ./test/e2e/ 2>&1 | tee e2e.log \
	  | grep --line-buffered -E '^(--- |PASS|FAIL|ok|panic|\s+[a-z_]+_test\.go:[0-9]+:)'; \
	  rc=$${PIPESTATUS[0]}; if [ $$rc -ne 0 ]; then echo "--- e2e failed; the last lines of e2e.log:"; tail -n 400 e2e.log; fi; exit $$rc

## chaos: TestChaos against bin/vetcd for CHAOS_DURATION (default 30m; `make test` runs 3m). The seed
## is CHAOS_SEED (default fixed), or CHAOS_SEEDS="1 2 3" for one run per seed; CHAOS_REPLICAS=3|5.
## Artifacts (timeline, summary; on a violation the porcupine visualization, history, logs) in chaos-artifacts/.
CHAOS_DURATION ?= 30m
CHAOS_TIMEOUT  ?= 4h
# The commit under test: taken when make starts, before a long run.
CHAOS_COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
export CHAOS_COMMIT
chaos: build
	@mkdir -p chaos-artifacts && touch chaos-artifacts/.started; \
	  CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_ARTIFACTS=$(abspath chaos-artifacts) VETCD_BIN=$(abspath $(BIN)/vetcd) \
	  $(GO) test -count=1 -timeout $(CHAOS_TIMEOUT) -v -run '^TestChaos$$' ./test/e2e/ 2>&1 | tee chaos.log \
	  | grep --line-buffered -E '^(--- |PASS|FAIL|ok|panic|\s+chaos(_[a-z]+)?_test\.go:[0-9]+: (chaos|violation))'; \
	  rc=$${PIPESTATUS[0]}; if [ $$rc -ne 0 ]; then echo "--- chaos failed; the last lines of chaos.log:"; tail -n 200 chaos.log; fi; \
	  $(MAKE) --no-print-directory chaos-record; exit $$rc

## chaos-record: bench/out/chaos.md (the "Chaos" section of BENCHMARKS.md) from the summaries of
## the runs since the last `make chaos` started.
chaos-record:
	@mkdir -p bench/out; out=bench/out/chaos.md; \
	  { echo "## Chaos"; echo; \
	    echo "\`make chaos\` with CHAOS_DURATION=$(CHAOS_DURATION)$${CHAOS_SEEDS:+ CHAOS_SEEDS=\"$$CHAOS_SEEDS\"}$${CHAOS_SEED:+ CHAOS_SEED=$$CHAOS_SEED}$${CHAOS_REPLICAS:+ CHAOS_REPLICAS=$$CHAOS_REPLICAS},"; \
	    echo "repository at $(CHAOS_COMMIT), recorded $$(date -u '+%Y-%m-%d %H:%M UTC'). One summary per run (seed):"; echo; \
	    for f in $$(find chaos-artifacts -name summary.txt -newer chaos-artifacts/.started | sort); do \
	      echo '```'; cat "$$f"; echo '```'; echo; done; } > $$out; echo "wrote $$out"

tools: $(STATICCHECK) test-tools

## test-tools: real servers for the tests, installed into bin/test (see hack/tools/README.md).
test-tools:
	@for s in hack/tools/*.sh; do [ -e "$$s" ] || continue; TOOLS_BIN=$(VETCD_TEST_BIN) bash "$$s" || exit 1; done

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

bench: build
	$(MAKE) -C bench

clean:
	rm -rf $(BIN) e2e.log chaos.log chaos-artifacts
