# The two README commands. Both bootstrap .venv from scratch when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hfsmri-installed
TEST_STAMP := $(VENV)/.hfsmri-test-installed
DEMO_DIR ?= hfsmri_demo
REALDATA := .cache/realdata/.complete

.PHONY: demo test venv clean realdata

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

$(TEST_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP) $(TEST_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hfsmri demo $(DEMO_DIR)

# real data no one here made (Colin27 head, brainspace HCP matrices) for the tests: apt/PyPI, cached
$(REALDATA): tests/fetch_realdata.py | $(PY)
	$(PY) tests/fetch_realdata.py

realdata: $(REALDATA)

test: $(TEST_STAMP) $(REALDATA)
	$(PY) -m pytest -n 2 --dist loadfile -q

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .cache
