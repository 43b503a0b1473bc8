# weft: `make` builds bin/, `make install` puts it in $(DESTDIR)$(BINDIR).
PREFIX  ?= /opt/cni
BINDIR  ?= $(PREFIX)/bin
CONFDIR ?= /etc/cni/net.d
PLUGINS := flannel bridge host-local portmap loopback

.PHONY: all build install install-conf check test unit conformance bench demo typecheck clean

all: build

node_modules: package-lock.json
	npm ci
	@touch node_modules

build: node_modules
	node scripts/build.mjs

# Each executable is written beside its final name and renamed over it, so a kubelet that runs the
# plugin at that moment gets the old file or the new one, never half of one.
install: build
	install -d -m 0755 $(DESTDIR)$(BINDIR)
	for p in $(PLUGINS); do \
	  install -m 0755 bin/$$p $(DESTDIR)$(BINDIR)/.$$p.weft-new && \
	  mv -f $(DESTDIR)$(BINDIR)/.$$p.weft-new $(DESTDIR)$(BINDIR)/$$p || exit 1; \
	done

install-conf:
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	install -m 0644 conf/10-flannel.conflist $(DESTDIR)$(CONFDIR)/.10-flannel.conflist.weft-new
	mv -f $(DESTDIR)$(CONFDIR)/.10-flannel.conflist.weft-new $(DESTDIR)$(CONFDIR)/10-flannel.conflist

typecheck: build
	npx tsc --noEmit

unit: build
	npx vitest run

test: typecheck unit

# README's test command and CI's: everything, ending in one "N passed, N failed" line.
check: build
	bash scripts/check

conformance: build
	bash conformance/run

bench: build
	node scripts/bench.mjs

demo: build
	bash scripts/demo

clean:
	rm -rf bin gen build dist

# --- standalone (issue 10): one Node.js single executable serving all five types, no Node.js needed
# on the node; dist/standalone/weft plus its five CNI names as hard links. See scripts/standalone.mjs.
.PHONY: standalone
standalone: build
	node scripts/standalone.mjs
