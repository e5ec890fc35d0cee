# The two commands in the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit unit-minimal process integration image-test bench native sanitize docs clean servers

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,devserver]"
	$(PY) -m pip install -q --no-deps "silero-vad==6.2.3"  # the VAD model file only; torch is not needed
	$(PY) -m pip install -q --no-deps "scenedetect==0.7.2"  # scene-cut's reference; keeps cv2 headless 4.x
	touch $(STAMP)

# Rebuild the extension in place whenever its C source changes.
daemon/.ring-built: native/ring.c $(STAMP)
	$(PY) setup.py -q build_ext --inplace
	touch $@

native: daemon/.ring-built

# The real Redis and PostgreSQL the sink tests start on loopback (tests/support/redis_server.py,
# postgres_server.py): Debian's packages, installed only when tests/support/servers.py finds no binaries.
# apt needs root (or password-less sudo); without either this fails with the one command to run.
SERVERS_STAMP := $(VENV)/.servers-stamp
$(SERVERS_STAMP): $(STAMP) tests/support/servers.py
	@missing="$$($(PY) -m tests.support.servers missing)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "make servers: as root, run: apt-get install -y --no-install-recommends $$missing" >&2; exit 1; fi; \
	  echo "make servers: installing $$missing"; \
	  $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing && \
	  test -z "$$($(PY) -m tests.support.servers missing)"; \
	fi
	touch $@

servers: $(SERVERS_STAMP)

demo: native
	$(PY) -m framepool.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check daemon processors tests benchmarks setup.py
	$(VENV)/bin/ruff format --check daemon processors tests benchmarks setup.py

# mypy cannot follow setuptools' editable package-dir mapping, so give it a symlinked tree.
typecheck: native
	rm -rf .typecheck && mkdir -p .typecheck
	cp -rs "$(CURDIR)/daemon" .typecheck/framepool
	cp -rs "$(CURDIR)/processors" .typecheck/framepool/processors
	cd .typecheck && MYPYPATH=. ../$(VENV)/bin/mypy --config-file ../pyproject.toml -p framepool

unit: native
	$(PY) -m pytest -q tests/unit

# The unit tier in a venv without the dev-server extra (aiortc): it must need only the base and test
# dependencies (the target fails if aiortc got into that venv). Not part of `make test` (a second venv
# costs ~25 s once); .ci/run runs it.
MINIMAL := .venv-minimal
$(MINIMAL)/.installed-stamp: pyproject.toml setup.py
	test -x $(MINIMAL)/bin/python || $(PYTHON) -m venv $(MINIMAL)
	$(MINIMAL)/bin/python -m pip install -q --upgrade pip
	$(MINIMAL)/bin/python -m pip install -q -e ".[test]"
	$(MINIMAL)/bin/python -m pip install -q --no-deps "silero-vad==6.2.3" "scenedetect==0.7.2"
	touch $@

unit-minimal: $(MINIMAL)/.installed-stamp native
	$(MINIMAL)/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('aiortc') and 'has aiortc')"
	$(MINIMAL)/bin/python -m pytest -q -rs tests/unit

process: native servers
	$(PY) -m pytest -q tests/process

integration: native servers
	$(PY) -m pytest -q tests/integration

# The container image built and run with podman (`make servers` installs podman, runc, catatonit and
# mmdebstrap). `make test` runs it too: a few minutes the first time, then podman's layer cache.
image-test: native servers
	$(PY) -m pytest -q tests/image

test: lint typecheck sanitize native servers
	$(PY) -m pytest -q tests

# ASan/UBSan build of the ring in a separate tree, so a concurrent test run never loads it by accident.
sanitize: $(STAMP)
	rm -rf .sanitize && mkdir -p .sanitize
	cp -rs "$(CURDIR)/daemon" .sanitize/framepool && rm -f .sanitize/framepool/_ring*.so
	cp -rs "$(CURDIR)/processors" .sanitize/framepool/processors
	FRAMEPOOL_SANITIZE=1 $(PY) setup.py -q build_ext --force --build-lib .sanitize --build-temp .sanitize/tmp
	PYTHONPATH=.sanitize LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
		$(PY) -c "import framepool._ring as r; assert r.__file__.startswith('$(CURDIR)/.sanitize'), r.__file__"
	PYTHONPATH=.sanitize LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
		$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_ring.py

bench: native
	$(PY) benchmarks/ring.py
	$(PY) benchmarks/pipeline.py

docs: $(STAMP)
	{ printf '# Settings reference\n\nGenerated from `framepool.settings.Settings` by `make docs` (`framepool config --reference --markdown`); a test fails when it is stale.\nPrecedence: defaults < TOML file (`--config`) < environment < command-line flags. `agents` is TOML-only (`[[agents]]` tables).\n\n'; \
	  $(VENV)/bin/framepool config --reference --markdown; } > docs/settings.md

clean:
	rm -rf $(VENV) $(MINIMAL) build .typecheck .sanitize daemon/*.so daemon/.ring-built *.egg-info
