# Entry points. `make demo` and `make test` work on a fresh machine: they install first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so the range in pyproject.toml is already met
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Render a clip on the tiny model with generated demo media (no weights, no GPU needed).
demo: $(STAMP)
	$(BIN)/python examples/make_media.py out/demo
	$(BIN)/python -m models render --checkpoint tiny --mode TIA \
	  --prompt "a presenter speaks to the camera in a bright studio" \
	  --image out/demo/portrait.png --audio out/demo/speech.wav -o out/demo/clip.mp4

## The whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out .pytest_cache
