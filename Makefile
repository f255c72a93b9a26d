# The two commands the README names:
#   make run   — install deps, build host + plugins, serve examples/todo on SQLite
#   make test  — install deps, build, run every test
SWIFT ?= swift
PORT ?= 4321

.PHONY: deps build run test bench bench-cache edge clean

deps:
	./scripts/install-deps.sh

# Release build; the host lands at .build/release/pylon-host and each plugin in plugins/.
build: deps
	$(SWIFT) build -c release
	mkdir -p plugins
	# --remove-destination: a new inode, so a host that has the old file mapped keeps running.
	cp --remove-destination .build/release/libPylon*.so plugins/

run: build
	cd examples/todo && mkdir -p data && ../../.build/release/pylon-host serve \
		--plugins ../../plugins --manifest pylon.manifest.json --port $(PORT) --dev

# Every suite; then the policy and realtime suites once more with Postgres as the store
# (the data-plane and search suites already run on every store, see TestStore.all).
# Each run has a time budget (scripts/test-watchdog.sh): a hung test fails the run with a
# report of the tests still running and the test process's stacks, instead of hanging CI.
test: build
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) PYLON_TEST_BUDGET=1500 ./scripts/test-watchdog.sh --skip-build
	SWIFT=$(SWIFT) PYLON_TEST_BUDGET=600 PYLON_TEST_DEFAULT_STORE=postgres \
		./scripts/test-watchdog.sh --skip-build --filter 'PolicyMatrixTests|RealtimeTests'

# Minimal edge build: the host and exactly one store plugin in $(EDGE_DIR)/ (see README).
EDGE_STORE ?= executor-c
EDGE_DIR ?= edge
edge: deps
	./scripts/edge-build.sh $(EDGE_STORE) $(EDGE_DIR)

bench: build
	bash bench/crud.sh

bench-cache: build
	bash bench/cache.sh

clean:
	rm -rf .build plugins edge
