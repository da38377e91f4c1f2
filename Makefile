# pyrunc: build, install, test and benchmark.
# The installed pyrunc runs on Debian's /usr/bin/python3 (through LIBDIR/python3, a symlink with
# a python3._pth beside it: see pyrunc/_interp.py) with -I -S (no site, no env vars):
# engines call `kill` and `delete` with an empty environment, and every millisecond of
# interpreter start-up is on the path of every container operation.
PREFIX ?= /usr/local
PYTHON ?= /usr/bin/python3
VENV ?= .venv
LIBDIR = $(DESTDIR)$(PREFIX)/lib/pyrunc
BINDIR = $(DESTDIR)$(PREFIX)/bin
LIBEXECDIR = $(DESTDIR)$(PREFIX)/libexec/pyrunc
ENGINESDIR = $(DESTDIR)$(PREFIX)/share/pyrunc/engines
DEPS = jsonschema pyroute2 python-prctl pyseccomp
TEST_ROOT = $(CURDIR)/build/root
PYTEST_ARGS ?=

.PHONY: all venv install uninstall test test-pure lint bench clean demo conformance load soak

all: venv

$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check wheel $(DEPS) pytest hypothesis
	touch $@

venv: $(VENV)/.done

# A self-contained tree: our package, our schema files, and the dependencies vendored beside
# them, all byte-compiled, behind a launcher that names its interpreter by absolute path.
install: $(VENV)/.done
	rm -rf $(LIBDIR).new
	mkdir -p $(LIBDIR).new/pyrunc $(LIBDIR).new/spec $(BINDIR)
	cp pyrunc/*.py $(LIBDIR).new/pyrunc/
	cp pyrunc/_boot.py $(LIBDIR).new/pyrunc_boot.py  # the launcher's first import: no package to scan
	cp spec/*.json $(LIBDIR).new/spec/
	echo 'COMMIT = "$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)"' > $(LIBDIR).new/pyrunc/_build.py
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-compile --target $(LIBDIR).new/vendor $(DEPS)
	$(PYTHON) -I -S pyrunc/_interp.py $(LIBDIR).new $(PREFIX)/lib/pyrunc  # python3, python3._pth
	$(PYTHON) -m compileall -q -j0 $(LIBDIR).new
	$(PYTHON) -I -S pyrunc/_bundle.py $(LIBDIR).new $(PREFIX)/lib/pyrunc
	rm -rf $(LIBDIR) && mv $(LIBDIR).new $(LIBDIR)
	sed -e 's|@LIBDIR@|$(PREFIX)/lib/pyrunc|g' -e '/^# /d' launcher.in > $(BINDIR)/pyrunc.tmp
	chmod 755 $(BINDIR)/pyrunc.tmp && mv $(BINDIR)/pyrunc.tmp $(BINDIR)/pyrunc
	# pyrunc-shim is self-contained (os, sys, time): a small interpreter, a small RSS.
	(echo '#!$(PREFIX)/lib/pyrunc/python3 -IS'; cat pyrunc/shim.py) > $(BINDIR)/pyrunc-shim.tmp
	chmod 755 $(BINDIR)/pyrunc-shim.tmp && mv $(BINDIR)/pyrunc-shim.tmp $(BINDIR)/pyrunc-shim
	# Engines: podman reads JSON error logs only from runtimes it knows by name, so a `runc`
	# entry point for `podman --runtime`; configuration snippets with this PREFIX filled in.
	mkdir -p $(LIBEXECDIR) $(ENGINESDIR)
	ln -sfn $(PREFIX)/bin/pyrunc $(LIBEXECDIR)/runc
	for f in contrib/engines/*; do sed 's|@PREFIX@|$(PREFIX)|g' $$f > $(ENGINESDIR)/$${f##*/}; done

uninstall:
	rm -rf $(LIBDIR) $(BINDIR)/pyrunc $(BINDIR)/pyrunc-shim $(LIBEXECDIR) $(DESTDIR)$(PREFIX)/share/pyrunc

# The kernel tests need root; they run the installed launcher, exactly what engines would run.
test: $(VENV)/.done
	$(MAKE) install PREFIX=$(TEST_ROOT)
	PYRUNC=$(TEST_ROOT)/bin/pyrunc $(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

# Our runtime-spec conformance suite (conformance/suite.py, standard library only) against any
# runtime: `RUNTIME=/usr/sbin/runc make conformance`. By default the pyrunc installed here.
RUNTIME ?= $(TEST_ROOT)/bin/pyrunc
conformance:
	if [ "$(RUNTIME)" = "$(TEST_ROOT)/bin/pyrunc" ]; then $(MAKE) install PREFIX=$(TEST_ROOT); fi
	$(PYTHON) conformance/suite.py --runtime "$(RUNTIME)" $(CONFORMANCE_ARGS)

test-pure: $(VENV)/.done
	$(VENV)/bin/python -m pytest tests -m "not kernel" $(PYTEST_ARGS)

# Pinned to the versions the tree is clean with: a newer ruff may enable more rules by default.
lint: $(VENV)/.done
	$(VENV)/bin/pip install -q ruff==0.17.6 mypy==2.4.1
	$(VENV)/bin/ruff check pyrunc tests bench conformance contrib/cni-hook
	$(VENV)/bin/mypy pyrunc

# Not in CI. load: the reliability issue's full numbers (500 lifecycles by 8 callers, 100
# long-running containers, 6000 generated configs, ...); soak: lifecycle loops for SOAK_SECONDS.
SOAK_SECONDS ?= 600
load: $(VENV)/.done
	$(MAKE) install PREFIX=$(TEST_ROOT)
	PYRUNC=$(TEST_ROOT)/bin/pyrunc PYRUNC_LOAD=full $(VENV)/bin/python -m pytest -s -p no:cacheprovider \
		tests/test_load.py tests/test_badinput.py $(PYTEST_ARGS)

soak: $(VENV)/.done
	$(MAKE) install PREFIX=$(TEST_ROOT)
	$(PYTHON) bench/soak.py --pyrunc $(TEST_ROOT)/bin/pyrunc --seconds $(SOAK_SECONDS)

bench:
	$(PYTHON) bench/bench.py --pyrunc $(PREFIX)/bin/pyrunc $(BENCH_ARGS)

demo:
	sh contrib/demo.sh

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
