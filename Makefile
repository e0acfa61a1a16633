# The two commands: `make run` (the main job) and `make test` (sets up what it needs, then runs every test).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test install bench lint clean

$(VENV)/.installed: pyproject.toml
	command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null) || \
		echo "wrk (the serving bench's load generator) could not be installed; its test will be skipped"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install  ## the demo on its own home, dashboard included
	$(VENV)/bin/appliance demo

# Four workers, one test file each: most tests wait on real daemon processes, so they overlap well on two cores.
test: install
	$(PY) -m pytest -q -p no:cacheprovider -n 4 --dist loadfile

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
