# Two entry points: `make run` (the main job) and `make test` (the default test suite).
# Each creates .venv and installs what it needs, idempotently.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# make run's sweeps, longest first (see run)
RUN_SWEEPS := .sweep-memorytalker .sweep-codetalker .sweep-memorytalker-style .sweep-faceformer \
              .sweep-memorytalker-memory

.PHONY: run .run-encoder .run-data $(RUN_SWEEPS) run-encoders test test-slow bench lint system clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

system:
	bash scripts/install-system-packages.sh

# The main job, on SynthTalk 'small' (generated on first use), the comparison of issue 14: the two floors;
# FaceFormer, CodeTalker and MemoryTalker over seeds 0,1,2 with the SynthTalk-pretrained encoder of their
# synthtalk presets; MemoryTalker's ablations at seed 0 (stage 1 only, no memory, style coupling 0 and
# 0.8); then the report committed under reports/synthtalk/.
# One intra-op thread per process, two processes at a time: a run's metrics depend on its thread count
# (tag talkbench.threads), so this gives the same numbers on any machine. The encoder and both datasets
# are made first, side by side; then the five sweeps go through make's two job slots longest first
# (measured per run: MemoryTalker ~1.3x CodeTalker, FaceFormer ~0.3x), each slot taking the next
# sweep as soon as it is free, so neither core idles while the other finishes.
# The ablation grids include the default point (memory=true; stage2=true at coupling 0.8): that is
# MemoryTalker's seed 0, long finished when a slot reaches them, so the sweeps link it as a point (the
# report's ablation tables need it) instead of training it again.
run: export OMP_NUM_THREADS = 1
run: $(STAMP)
	$(MAKE) --no-print-directory -j2 .run-encoder .run-data
	$(BIN)/bench run --method template --no-leaderboard
	$(BIN)/bench run --method mean-motion --no-leaderboard
	$(MAKE) --no-print-directory -j2 $(RUN_SWEEPS)
	$(BIN)/bench report --dataset synthtalk --out reports/synthtalk

.run-encoder:
	$(BIN)/bench pretrain-encoder
.run-data:
	$(BIN)/bench data make synthtalk --preset small
	$(BIN)/bench data make synthtalk --preset small --style-coupling 0
.sweep-memorytalker:
	$(BIN)/bench sweep --method memorytalker --seeds 0,1,2
.sweep-codetalker:
	$(BIN)/bench sweep --method codetalker --seeds 0,1,2
.sweep-memorytalker-style:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.stage2=true,false \
	  --grid dataset.style_coupling=0,0.8
.sweep-faceformer:
	$(BIN)/bench sweep --method faceformer --seeds 0,1,2
.sweep-memorytalker-memory:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.memory=true,false

# The note's encoder comparison: every method also with the mel encoder learnt from scratch (the presets
# before issue 14), seeds 0,1,2 (~90 more CPU-minutes); run after `make run`, then `bench report` again.
run-encoders: export OMP_NUM_THREADS = 1
run-encoders: $(STAMP)
	$(BIN)/bench sweep --method faceformer --grid faceformer.audio.kind=mel --seeds 0,1,2 --jobs 2
	$(BIN)/bench sweep --method codetalker --grid codetalker.audio.kind=mel --seeds 0,1,2 --jobs 2
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.audio.kind=mel --seeds 0,1,2 --jobs 2

test: $(STAMP) system
	$(BIN)/python -m pytest -n 2 -q
	BIN=$(BIN) bash scripts/check-new-method.sh

test-slow: $(STAMP) system
	$(BIN)/python -m pytest -m slow -q -s --timeout 7200

bench: $(STAMP) system
	$(BIN)/python -m pytest benchmarks -q -p no:xdist --benchmark-only -o addopts=""

lint: $(STAMP)
	$(BIN)/ruff check talkbench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
