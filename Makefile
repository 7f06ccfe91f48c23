# The two README commands. Both bootstrap .venv from scratch when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hfsmri-installed
TEST_STAMP := $(VENV)/.hfsmri-test-installed
DEMO_DIR ?= hfsmri_demo

.PHONY: demo test venv clean

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

test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
