# Usual targets. `make install`: pyproject.toml's dependencies and extras in one resolver run, then its
# no-deps extras (weight files, the Optuna sweeper) with --no-deps.
PY ?= python

.PHONY: dense-embedding bench-tracking install test test-all test-slow test-slurm test-optuna slurm-local test-browser browser-deps app lint format bench bench-video bench-real baseline main yardstick results test-fast bench-gpu clean

install:
	$(PY) -m pip install -e ".[app,cluster,dev]"
	$(PY) -m pip install --no-deps $$($(PY) scripts/no_deps.py)
	$(PY) scripts/vendor_viewer.py

test:
	$(PY) -m pytest -m "not slow and not gpu and not slurm" -q

# unit tests only (no training, no entry-point processes, no studio worker): a few minutes on 2 cores
test-fast:
	$(PY) -m pytest -m "not slow and not gpu and not slurm and not integration" -q

test-slow:
	$(PY) -m pytest -m "slow and not slurm" -q

# a one-node SLURM cluster on this machine (apt: slurm-wlm, munge, slurmdbd, mariadb), then the SLURM tests
slurm-local:
	bash scripts/slurm_local.sh

test-slurm: slurm-local
	$(PY) -m pytest -m slurm -q -s

test-optuna:
	$(PY) -m pytest tests/test_optuna.py -m slow -q -s

# The web app's browser test (also slow): Debian's chromium from apt, driven by Playwright.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test-browser: browser-deps
	$(PY) -m pytest -m browser -q -p no:cacheprovider

# The avatar studio: web + worker on http://127.0.0.1:5000 (create a user first: python -m src.app create-user NAME)
app:
	$(PY) -m src.app

test-all:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# On a GPU (under 8 minutes): the gpu tests, both families' train steps at 256/512 px, render fps at 512 px,
# peak memory -> bench/results/gpu.json. Proving it on CPU (gpu_on_cpu.json; 256 px only, since the image
# avatar's 512 px training step at batch 4 needs more than 23 GB of RAM): make bench-gpu DEVICE=cpu
DEVICE ?= cuda
bench-gpu:
	$(PY) -m bench.bench_gpu --device $(DEVICE) $(if $(filter cpu,$(DEVICE)),--sizes 256 --repeats 1 --warmup 0)

bench:
	$(PY) -m bench.bench_render
	$(PY) -m bench.bench_nha

# The whole chain on a real clip, each step timed (bench/results/video_chain_cpu.json, results under
# logs/bench_video_chain/): make bench-video [VIDEO=me.mp4] [EXPERIMENT=selfie_video] (no mesh to export)
AVATAR_ASSETS ?= ../shared/assets
VIDEO ?= $(AVATAR_ASSETS)/videos/single_face.mp4
EXPERIMENT ?= nha_video
bench-video:
	$(PY) -m bench.bench_video_chain --video $(VIDEO) --experiment $(EXPERIMENT) $(if $(filter selfie%,$(EXPERIMENT)),--skip export)

# FaceMesh-478 embedding on ICT (src/headmodel/data/ict_facemesh478.npz), calibrated on the seed-1 synthetic subject
dense-embedding:
	OMP_NUM_THREADS=1 $(PY) -m src.tracking.calibrate_dense --seed 1 --frames 120 --resolution 256

# Real-video benchmark: the whole chain with defaults on each of the four people, mesh and image avatar;
# bench/results/real_videos_cpu.{json,md} and contact sheets in bench/results/real_videos_cpu/ (over an hour
# on 2 cores): make bench-real [CLIPS="me.mp4 you.mp4"] [FAMILIES=mesh]
bench-real:
	$(PY) -m bench.bench_real $(if $(CLIPS),--clips $(CLIPS)) $(if $(FAMILIES),--families $(FAMILIES))

# tracking bench (68-point and dense FaceMesh tracking, scored on the seed-0 synthetic subject's MP4)
bench-tracking:
	OMP_NUM_THREADS=1 $(PY) -m bench.bench_tracking

baseline:
	$(PY) train.py experiment=baseline_synthetic

clean:
	rm -rf logs outputs .pytest_cache .ruff_cache

# The product's job on a real selfie clip: preprocess + track + train the mesh avatar, score its held-out
# frames, reenact a smile and an orbit, export the mesh. Results land in $(MAIN)/:
#   make main [VIDEO=me.mp4] [MAIN=outputs/me]
MAIN ?= outputs/main
main:
	$(PY) train.py experiment=nha_video data.path=$(VIDEO) hydra.run.dir=$(MAIN)/train callbacks.rich_progress_bar=null
	$(call after_training,$(MAIN))
	$(PY) reenact.py ckpt_path=$(MAIN)/train/checkpoints/last.ckpt mode=orbit out_dir=$(MAIN)/orbit hydra.run.dir=$(MAIN)/orbit progress=false

# The synthetic yardstick (ground truth known): the same chain on the embedded synthetic subject.
YARD ?= outputs/yardstick
yardstick:
	$(PY) train.py experiment=nha_synthetic hydra.run.dir=$(YARD)/train
	$(call after_training,$(YARD))

# The steps after training of a job folder $(1): score the held-out frames, reenact a smile, export the mesh.
define after_training
	$(PY) evaluate.py ckpt_path=$(1)/train/checkpoints/last.ckpt out_dir=$(1)/eval hydra.run.dir=$(1)/eval
	$(PY) reenact.py ckpt_path=$(1)/train/checkpoints/last.ckpt mode=preset preset=smile out_dir=$(1)/reenact hydra.run.dir=$(1)/reenact progress=false
	$(PY) -m src.export ckpt_path=$(1)/train/checkpoints/last.ckpt out_dir=$(1)/export hydra.run.dir=$(1)/export
endef

# docs/results.md and the README's results table, from bench/results/*.json (and the runs above when given)
results:
	$(PY) -m bench.results_doc $(if $(wildcard $(MAIN)/eval/metrics.json),--main $(MAIN)) $(if $(wildcard $(YARD)/eval/metrics.json),--yardstick $(YARD))
