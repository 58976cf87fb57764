# The two commands a newcomer needs: `make run` (the demo on an embedded AWS) and `make test`.
# Both set everything up from a fresh clone; nothing else is needed on this kind of machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit lint schema clean

$(STAMP): pyproject.toml layers/relay/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/wan-relay demo

test: $(STAMP) lint
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

schema: $(STAMP)
	$(BIN)/python -m wan_relay.schema schemas

clean:
	rm -rf $(VENV) .pytest_cache out
