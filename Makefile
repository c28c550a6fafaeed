# The two README commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create or reuse .venv through tools/setup_env.sh (fast when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test doctor
setup:
	@ZSP_VENV=$(abspath $(VENV)) tools/setup_env.sh

demo: setup
	@$(VENV)/bin/zsp demo

test: setup
	@$(VENV)/bin/ruff check --quiet zsp_ros experiments tests
	@$(VENV)/bin/mypy
	@$(PY) -m pytest -q tests

doctor: setup
	@$(VENV)/bin/zsp doctor
