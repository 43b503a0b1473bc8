# weft: `make` builds bin/, `make install` puts it in $(DESTDIR)$(BINDIR).
PREFIX  ?= /opt/cni
BINDIR  ?= $(PREFIX)/bin
CONFDIR ?= /etc/cni/net.d
# The node agent (flanneld) is a daemon, not a CNI plugin: it goes here, never into BINDIR.
AGENTDIR ?= /usr/local/bin

# The project's Node.js (scripts/project-node, run by scripts/setup), first on PATH for every recipe
# and its headers for native builds; without it, the system's.
ifneq ($(wildcard $(CURDIR)/.node/bin/node),)
export PATH := $(CURDIR)/.node/bin:$(PATH)
export npm_config_nodedir := $(CURDIR)/.node
endif

.PHONY: all build install install-conf check check-installed check-all test unit conformance bench demo typecheck lint format clean mutation

all: build

node_modules: package-lock.json
	npm ci
	@touch node_modules

build: node_modules
	node scripts/build.mjs

# Installing is scripts/install's (also the image's entrypoint), so both ways behave alike: each
# executable written beside its final name and renamed over it (a kubelet running the plugin at
# that moment gets the old file or the new one, never half of one), the conflist written only when
# there is none. FORM=script installs bin/ (Node.js needed on the node), FORM=standalone the single
# executable (make standalone; no Node.js needed); FROM=DIR installs that directory's build instead.
# FORCE_CONF=1 replaces an existing conflist; NO_VERIFY=1 skips running VERSION through each name.
FORM ?= script
INSTALL_ARGS = --bin-dir $(DESTDIR)$(BINDIR) --conf-dir $(DESTDIR)$(CONFDIR) --agent-dir $(DESTDIR)$(AGENTDIR) \
  $(if $(filter 1,$(FORCE_CONF)),--force-conf) $(if $(filter 1,$(NO_VERIFY)),--no-verify)

install: $(if $(FROM),,$(if $(filter standalone,$(FORM)),standalone,build))
	sh scripts/install $(if $(FROM),--from $(FROM),--$(FORM)) $(INSTALL_ARGS)

install-conf:
	sh scripts/install --conf-only $(INSTALL_ARGS)

typecheck: build
	npx tsc --noEmit

unit: build
	npx vitest run

test: typecheck unit

# The linter (eslint with type information, eslint.config.mjs) and the import layering
# (dependency-cruiser, .dependency-cruiser.cjs: lib/ imports no program, its folders form layers,
# no cycles). Type information needs gen/, hence the build.
lint: build
	npx eslint .
	npx depcruise --config .dependency-cruiser.cjs .
	npx prettier --check .

# Prettier (.prettierrc.json) rewrites the code in place.
format: node_modules
	npx prettier --write .

# The lint first (a failure stops here, before the tests), then everything, ending in one
# "N passed, N failed" line.
check: build lint
	bash scripts/check

# The tests that execute weft's programs once more, against the standalone executables as an operator
# gets them: STANDALONE_DIR (default dist/standalone, built first by `make standalone`, so RUNTIME=bun
# tests the Bun-compiled one) installed by scripts/install into a fresh directory under build/ (CNI
# plugins and flanneld side by side, removed afterwards), then test/integration, test/reliability,
# test/scale and the conformance suite with WEFT_BIN set to it (scripts/check --installed), ending in
# the same "total: N passed, N failed, N skipped" line. The unit tests run once, in make check.
# STANDALONE_DIR=DIR tests a build made elsewhere, as it is (not rebuilt).
STANDALONE_DIR ?= dist/standalone
check-installed: $(if $(filter dist/standalone,$(STANDALONE_DIR)),standalone,build)
	@mkdir -p build
	@dir=$$(mktemp -d "$(CURDIR)/build/check-installed.XXXXXX") && trap 'rm -rf "$$dir"' EXIT && \
	  sh scripts/install --from "$(STANDALONE_DIR)" --bin-dir "$$dir/bin" --agent-dir "$$dir/bin" --no-conf && \
	  WEFT_STANDALONE_RUNTIME=$(RUNTIME) bash scripts/check --installed "$$dir/bin"

# README's test command and CI's: make check, then the same tests once more against each standalone
# executable as scripts/install installs it, the Node.js single executable and the Bun-compiled one.
check-all: check
	node scripts/standalone.mjs --out build/standalone-node
	$(MAKE) check-installed STANDALONE_DIR=build/standalone-node RUNTIME=node
	node scripts/standalone.mjs --runtime bun --out build/standalone-bun
	$(MAKE) check-installed STANDALONE_DIR=build/standalone-bun RUNTIME=bun

conformance: build
	bash conformance/run

# The plugins' start-up against the Go reference (scripts/bench.mjs), in the three forms side by side
# (bin/ on Node.js, the Node.js single executable, the Bun-compiled one), then the node agent at scale
# (scripts/bench-agent.mjs: 1,000 then 5,000 leases, a joining node, churn; build/bench-agent.json).
# `make bench-agent` runs the second alone; BENCH_AGENT_ARGS passes it flags, e.g. "--sizes 20,40
# --churn-rate 10 --churn-seconds 2" for a quick run.
bench: build
	node scripts/standalone.mjs --out build/bench/node
	node scripts/standalone.mjs --runtime bun --out build/bench/bun
	node scripts/bench.mjs --form script=bin --form node=build/bench/node --form bun=build/bench/bun
	node scripts/bench-agent.mjs $(BENCH_AGENT_ARGS)

.PHONY: bench-agent
bench-agent: build
	node scripts/bench-agent.mjs $(BENCH_AGENT_ARGS)

demo: build
	bash scripts/demo

# Mutation testing of the pure modules (StrykerJS, stryker.config.json); outside check, see DEVELOPING.md.
mutation: build
	npx stryker run

clean:
	rm -rf bin gen build dist

# --- standalone: one single executable serving every program, no Node.js needed on the node;
# dist/standalone/weft plus every program's name as hard links. RUNTIME=node (default: a Node.js
# single executable) or RUNTIME=bun (compiled by the Bun of scripts/project-bun; BASELINE=1 for x64
# CPUs without AVX2). See scripts/standalone.mjs.
RUNTIME ?= node
.PHONY: standalone
standalone: build
	node scripts/standalone.mjs --runtime $(RUNTIME) $(if $(filter 1,$(BASELINE)),--baseline)
