# The two commands in the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit process integration bench native sanitize clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,devserver]"
	touch $(STAMP)

# Rebuild the extension in place whenever its C source changes.
daemon/.ring-built: native/ring.c $(STAMP)
	$(PY) setup.py -q build_ext --inplace
	touch $@

native: daemon/.ring-built

demo: native
	$(PY) -m framepool.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check daemon processors tests benchmarks setup.py

# mypy cannot follow setuptools' editable package-dir mapping, so give it a symlinked tree.
typecheck: native
	rm -rf .typecheck && mkdir -p .typecheck
	cp -rs "$(CURDIR)/daemon" .typecheck/framepool
	cp -rs "$(CURDIR)/processors" .typecheck/framepool/processors
	cd .typecheck && MYPYPATH=. ../$(VENV)/bin/mypy --config-file ../pyproject.toml -p framepool

unit: native
	$(PY) -m pytest -q tests/unit

process: native
	$(PY) -m pytest -q tests/process

integration: native
	$(PY) -m pytest -q tests/integration

test: lint typecheck native
	$(PY) -m pytest -q tests

sanitize: $(STAMP)
	FRAMEPOOL_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q tests/unit/test_ring.py
	$(PY) setup.py -q build_ext --inplace --force

bench: native
	$(PY) benchmarks/ring.py
	$(PY) benchmarks/pipeline.py

clean:
	rm -rf $(VENV) build .typecheck daemon/*.so daemon/.ring-built *.egg-info
