# The two commands of the README: `make demo` (set up, run the main job) and `make test`
# (set up, run every check). Both create ./.venv from python3 and install the project into
# it; the install is redone whenever pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck protocheck pytest proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/actorflow demo

test: lint typecheck protocheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

protocheck: $(STAMP)
	$(BIN)/actorflow protogen --check

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

proto: $(STAMP)
	$(BIN)/actorflow protogen

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
