# Two entry points: `make run` (the main job) and `make test` (the default test suite).
# Each creates .venv and installs what it needs, idempotently.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# make run's sweeps, longest first (see run); make run-studies' (see there)
RUN_SWEEPS := .sweep-memorytalker .sweep-selftalk .sweep-codetalker .sweep-unitalker .sweep-faceformer
STUDY_SWEEPS := .sweep-memorytalker-style .sweep-memorytalker-stage2 .finetune-unitalker \
                .sweep-memorytalker-init .sweep-memorytalker-epochs .sweep-memorytalker-memory

.PHONY: run run-samplers .seeds-facediffuser .seeds-codetalker-nd run-studies .run-encoder .run-data .run-variants $(RUN_SWEEPS) $(STUDY_SWEEPS) \
        run-encoders test test-slow bench lint system clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

system:
	bash scripts/install-system-packages.sh

# The main job, on SynthTalk 'small' (generated on first use): the comparison table of the MemoryTalker
# paper (FaceFormer, CodeTalker, SelfTalk, UniTalker, MemoryTalker), three seeds each, every method on the
# SynthTalk-pretrained encoder of its synthtalk preset, beside the two floors; then the report committed
# under reports/synthtalk/. UniTalker trains one model on the main data and its blendshape variant (a
# head each) and is scored on each. The methods that sample (FaceDiffuser, CodeTalker-ND) are
# run-samplers': 10 samples for each of 8 speaker styles on each of 40 test clips make one of their
# seeds cost about three of the others', too much for make run's hour on two cores.
# One intra-op thread per process, two processes at a time: a run's metrics depend on its thread count
# (tag talkbench.threads) and CPU, so this gives the same numbers on any machine of a kind. The encoder
# and the datasets are made first, side by side; then the sweeps go through make's two job slots longest
# first, each slot taking the next sweep as soon as it is free, so neither core idles while the other
# finishes. What each run cost is in the report's speed table ("train (min)").
run: export OMP_NUM_THREADS = 1
run: $(STAMP)
	$(MAKE) --no-print-directory -j2 .run-encoder .run-data .run-variants
	$(BIN)/bench run --method template --no-leaderboard
	$(BIN)/bench run --method mean-motion --no-leaderboard
	$(MAKE) --no-print-directory -j2 $(RUN_SWEEPS)
	$(BIN)/bench report --dataset synthtalk --out reports/synthtalk

# The methods that sample, FaceDiffuser and CodeTalker-ND, over seeds 0, 1, 2 (after `make run`, whose
# floors and encoder they share), then the report again with their rows, MEE, CE and Diversity.
run-samplers: export OMP_NUM_THREADS = 1
run-samplers: $(STAMP)
	$(MAKE) --no-print-directory -j2 .seeds-facediffuser .seeds-codetalker-nd
	$(BIN)/bench report --dataset synthtalk --out reports/synthtalk
.seeds-facediffuser:
	$(BIN)/bench sweep --method facediffuser --seeds 0,1,2
.seeds-codetalker-nd:
	$(BIN)/bench sweep --method codetalker-nd --seeds 0,1,2

# The studies, after `make run` (they reuse its runs as points): MemoryTalker's stage 2 (stage 1 only vs
# both stages over 3 seeds; both at data style coupling 0, 0.4, 0.8 and 1; stage 2 from the release's
# random style scale vs one rescaled to average 1; 5, 10 and 20 stage-2 epochs; no memory) and
# UniTalker's fine-tuning curve (a new head on the topology2 variant from make run's seed-0 model,
# against training from scratch, at 4 shares of the training clips, seeds 0,1,2). The longest sweep first.
run-studies: export OMP_NUM_THREADS = 1
run-studies: $(STAMP)
	$(MAKE) --no-print-directory -j2 $(STUDY_SWEEPS)
	$(BIN)/bench report --dataset synthtalk --out reports/synthtalk
	$(BIN)/bench report --dataset synthtalk-topology2 --out reports/synthtalk-topology2

.run-encoder:
	$(BIN)/bench pretrain-encoder
.run-data:
	$(BIN)/bench data make synthtalk --preset small
.run-variants:
	$(BIN)/bench data make synthtalk --preset small --variant blendshape
	$(BIN)/bench data make synthtalk --preset small --variant topology2
.sweep-memorytalker:
	$(BIN)/bench sweep --method memorytalker --seeds 0,1,2
.sweep-codetalker:
	$(BIN)/bench sweep --method codetalker --seeds 0,1,2
.sweep-faceformer:
	$(BIN)/bench sweep --method faceformer --seeds 0,1,2
.sweep-selftalk:
	$(BIN)/bench sweep --method selftalk --seeds 0,1,2
.sweep-unitalker:
	$(BIN)/bench sweep --method unitalker --dataset synthtalk,synthtalk-blendshape --seeds 0,1,2

# The grids include make run's default points (stage2=true, style_weight_init=release, memory=true,
# coupling 0.8): finished long before, the sweeps link them as points instead of training them again.
.sweep-memorytalker-stage2:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.stage2=true,false --seeds 0,1,2
.sweep-memorytalker-init:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.style_weight_init=release,unit --seeds 0,1,2
.sweep-memorytalker-style:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.stage2=true,false \
	  --grid dataset.style_coupling=0,0.4,0.8,1
.sweep-memorytalker-epochs:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.animating_epochs=5,10,20
.sweep-memorytalker-memory:
	$(BIN)/bench sweep --method memorytalker --grid memorytalker.memory=true,false
.finetune-unitalker:
	src=$$($(BIN)/python scripts/find-run.py --dataset synthtalk+synthtalk-blendshape --method unitalker \
	  --seed 0) && $(BIN)/bench sweep --method unitalker --dataset synthtalk-topology2 \
	  --set unitalker.finetune_head=$$src --grid dataset.train_fraction=0.1,0.25,0.5,1.0 --seeds 0,1,2
	$(BIN)/bench sweep --method unitalker --dataset synthtalk-topology2 --grid dataset.train_fraction=0.1,0.25,0.5,1.0 \
	  --seeds 0,1,2

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
