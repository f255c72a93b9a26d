# The two commands the README names:
#   make run   — install deps, build host + plugins, serve examples/todo on SQLite
#   make test  — install deps, build, run every test
SWIFT ?= swift
PORT ?= 4321

.PHONY: deps build run chat test bench bench-cache edge clean

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

# The full-stack example (examples/chat/README.md): its page is bundled by Bun with the
# TypeScript client compiled in, and served by the host beside the API.
chat: build
	bun build examples/chat/src/app.ts --outfile examples/chat/web/app.js --target browser --format esm
	cd examples/chat && mkdir -p data && ../../.build/release/pylon-host serve \
		--plugins ../../plugins --manifest pylon.manifest.json --port $(PORT) --dev

# Every suite; then the policy and realtime suites once more with Postgres as the store
# (the data-plane and search suites already run on every store, see TestStore.all); then
# the TypeScript client's `bun test` against the release host (scripts/test-clients.sh).
# The suites that hold stalled and slow clients (a full socket, a stall window) run on their
# own after the rest: with every other suite's hosts busy on the same 2 cores, their hosts
# were starved. Each run has a time budget (scripts/test-watchdog.sh): a hung test fails
# the run with a report of the tests still running and the test process's stacks.
SLOW_CLIENT_SUITES = RealtimeTests|PresenceLeaveTests|StreamStartTests|RelayBacklogTests|StreamWriteDeadlineTests
# Swift Testing starts every test at once by default: with ~400 black-box tests that was
# over 200 hosts on 2 cores (load average 150) and timeouts everywhere. At most this many
# tests run at a time.
TEST_WIDTH = --experimental-maximum-parallelization-width 16
test: build
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) PYLON_TEST_BUDGET=1500 ./scripts/test-watchdog.sh --skip-build $(TEST_WIDTH) --skip '$(SLOW_CLIENT_SUITES)'
	SWIFT=$(SWIFT) PYLON_TEST_BUDGET=600 ./scripts/test-watchdog.sh --skip-build --filter '$(SLOW_CLIENT_SUITES)'
	SWIFT=$(SWIFT) PYLON_TEST_BUDGET=600 PYLON_TEST_DEFAULT_STORE=postgres \
		./scripts/test-watchdog.sh --skip-build $(TEST_WIDTH) --filter 'PolicyMatrixTests|RealtimeTests'
	PYLON_CLIENT_TEST_BUDGET=300 ./scripts/test-clients.sh

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
