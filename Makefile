# The two commands the README names:
#   make run   — install deps, build host + plugins, serve examples/todo on SQLite
#   make test  — install deps, build, run every test
SWIFT ?= swift
PORT ?= 4321

.PHONY: deps build run test bench bench-cache clean

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

test: build
	$(SWIFT) test

bench: build
	bash bench/crud.sh

bench-cache: build
	bash bench/cache.sh

clean:
	rm -rf .build plugins
