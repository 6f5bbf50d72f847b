# Two entry points: `make run` (the main job) and `make test` (the default test suite).
# Each creates .venv and installs what it needs, idempotently.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow bench lint system clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

system:
	bash scripts/install-system-packages.sh

# The main job, on SynthTalk 'small' (generated on first use): the two floors, FaceFormer and
# MemoryTalker, the stage-2 x style-coupling and memory ablations of MemoryTalker (points already run
# are skipped), then the comparison report committed under reports/synthtalk/ (~40 min on 2 cores).
run: $(STAMP)
	$(BIN)/bench run --method template --no-leaderboard
	$(BIN)/bench run --method mean-motion --no-leaderboard
	$(BIN)/bench run --method faceformer --no-leaderboard
	$(BIN)/bench run --method memorytalker
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.stage2=false,true --grid dataset.style_coupling=0,0.8 --jobs 2
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.memory=true,false
	$(BIN)/bench report --dataset synthtalk --out reports/synthtalk

test: $(STAMP) system
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(STAMP) system
	$(BIN)/python -m pytest -m slow -q -s --timeout 7200

bench: $(STAMP) system
	$(BIN)/python -m pytest benchmarks -q -p no:xdist --benchmark-only -o addopts=""

lint: $(STAMP)
	$(BIN)/ruff check talkbench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
