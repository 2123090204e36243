# Entry points. `make demo` and `make test` work on a fresh machine: they install first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo render-demo test check lock bench-dispatch bench-limits soak clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so the range in pyproject.toml is already met
	$(BIN)/pip install -q torch==2.13.0
	# every other package at the version the tests ran with (requirements.lock: pip constraints)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	# DeepSpeed builds a small C++ op on first start (~40 s); pay it once here, not in a test
	$(BIN)/python -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null 2>&1 || echo "DeepSpeed op prebuild skipped"
	touch $(STAMP)

install: $(STAMP)

## The farm's main job on embedded defaults: start it (API, release loop, one explore
## worker on the tiny model; SQLite, a folder broker, local objects), submit
## examples/batch.yaml and wait for the clips (copied to out/demo/).
demo: $(STAMP)
	$(BIN)/python examples/make_media.py examples/media
	$(BIN)/python examples/demo.py

## One clip straight from the engine, no farm.
render-demo: $(STAMP)
	$(BIN)/python examples/make_media.py examples/media
	$(BIN)/python -m models render --checkpoint tiny --mode TIA \
	  --prompt "a presenter speaks to the camera in a bright studio" \
	  --image examples/media/portrait.png --audio examples/media/speech.wav -o out/demo/engine-clip.mp4

# the dashboard's end-to-end tests drive Debian's chromium (Playwright's own download
# cannot reach its servers from here)
/usr/bin/chromium:
	apt-get update -qq && apt-get install -y -qq chromium

## The whole test suite.
test: $(STAMP) /usr/bin/chromium
	$(BIN)/python -m pytest

## Lint, format and types: what a maintainer checks before a commit (CI runs it before the tests).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Write requirements.lock anew from the installed environment (after changing pyproject.toml).
lock: $(STAMP)
	{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

## Dispatch benchmark on the local Postgres and Redis (see benchmarks/dispatch.py).
bench-dispatch: $(STAMP)
	$(BIN)/python benchmarks/dispatch.py

## Peak memory of a dispatcher at the request limits and of a render at a checkpoint's take
## limits (see benchmarks/limits.py, benchmarks/worker_limits.py).
bench-limits: $(STAMP)
	$(BIN)/python benchmarks/limits.py
	$(BIN)/python benchmarks/worker_limits.py

## Soak: 500 takes on 3 workers, one SIGKILLed every 4 s; checks every invariant.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) out .pytest_cache
