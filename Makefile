# Countersign — developer entry points. `make demo` and `make test` work from nothing on Debian 12
# (as root): both first run Deploy/dev/up, which installs what is missing.
SWIFT        ?= swift
BUILD_FLAGS  ?=
RELEASE_FLAGS = -c release
export COUNTERSIGN_CONFIG ?= $(CURDIR)/.local/countersign.yaml

.PHONY: demo test dev-up dev-down clean build release \
        bench bench-wire bench-policy bench-sign bench-ledger

## demo: bring up a complete local instance from nothing and run the main job through it
demo: dev-up release
	Deploy/dev/demo

## test: install what is missing and run every test
test:
	Deploy/dev/up --test-tools
	scripts/test

dev-up:
	Deploy/dev/up

dev-down:
	Deploy/dev/down

## clean: stop everything and remove .local/ (keys, certificates, database) and build output
clean: dev-down
	rm -rf .local .build

build:
	$(SWIFT) build $(BUILD_FLAGS)

release:
	$(SWIFT) build $(RELEASE_FLAGS) --product countersign

## bench: signed, ledgered decisions per second and their latency on the dev node
bench: dev-up release
	scripts/bench-decisions

bench-wire: dev-up release
	.build/release/countersign bench wire

bench-policy: dev-up release
	scripts/bench-policy

bench-sign: dev-up release
	.build/release/countersign bench sign

bench-ledger: dev-up release
	scripts/bench-ledger
