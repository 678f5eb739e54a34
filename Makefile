# make demo | make test | make bench | make sanitize — each sets up .venv (CPU torch) and builds the
# extension first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is the CPU build lying on this machine's disk; a bare `torch` would pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo demo-model test bench setup sanitize

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)" ninja
	touch $@

# The package's own dependencies and extras come from pyproject.toml; laspy is the light half of [io]
# (open3d, the other half, is large: its tests skip without it).
$(VENV)/.built: $(VENV)/.deps setup.py pyproject.toml $(shell find csrc -type f)
	$(PY) -m pip install -q --no-build-isolation -e ".[dev,viz]" "laspy[lazrs]"
	touch $@

setup: $(VENV)/.built

demo: setup
	$(VENV)/bin/pointengine demo

# The recipe of models/demo.safetensors (README: "The demo model"): seeded synthetic scans, three
# epochs of pointengine train, two more with class-balanced loss, one with milder balancing, then
# seven more epochs on three fresh sets of scans with the balancing lowered step by step, four on
# streets with four times the rare classes (--rare 4), two on usual ones, and six with the
# Lovász-softmax term on three fresh sets of usual ones, and eight more on four fresh sets (24-31),
# which were the first the rougher lidar of today's generator wrote (README); about 7.5 h on 2
# cores. Last, the classifier's bias takes back part of the balancing's push toward rare classes
# (logit adjustment, tau 0.45, chosen on the validation scans).
DEMO_DATA ?= data/synthetic
DEMO_TRAIN = OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pointengine train --config models/demo.yaml --data $(DEMO_DATA) \
	--val-sequences 08 --batch-size 2 --optimizer adamw --threads 2
demo-model: setup
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 00=600 01=400 02=500 03=500 04=500 05=500 \
		06=500 07=500 08=12 --seed 0
	$(DEMO_TRAIN) --train-sequences 00 01 --epochs 3 --lr 2e-3 --warmup-epochs 0.1 --seed 0 --out runs/demo
	$(DEMO_TRAIN) --train-sequences 00 01 --init runs/demo/model.safetensors --epochs 2 --lr 1e-3 \
		--warmup-epochs 0.05 --class-balance 0.5 --seed 1 --out runs/demo-balanced
	$(DEMO_TRAIN) --train-sequences 00 01 --init runs/demo-balanced/model.safetensors --epochs 1 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.25 --seed 2 --out runs/demo-final
	$(DEMO_TRAIN) --train-sequences 02 03 --init runs/demo-final/model.safetensors --epochs 3 --lr 1e-3 \
		--warmup-epochs 0.05 --class-balance 0.4 --seed 3 --out runs/demo-more
	$(DEMO_TRAIN) --train-sequences 04 05 --init runs/demo-more/model.safetensors --epochs 2 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --seed 4 --out runs/demo-more2
	$(DEMO_TRAIN) --train-sequences 06 07 --init runs/demo-more2/model.safetensors --epochs 2 --lr 3e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --seed 5 --out runs/demo-more3
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 10=500 11=500 12=500 13=500 --seed 0 --rare 4
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 14=500 15=500 --seed 0
	$(DEMO_TRAIN) --train-sequences 10 11 --init runs/demo-more3/model.safetensors --epochs 2 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --seed 7 --out runs/demo-rare
	$(DEMO_TRAIN) --train-sequences 12 13 --init runs/demo-rare/model.safetensors --epochs 2 --lr 3e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --seed 8 --out runs/demo-rare2
	$(DEMO_TRAIN) --train-sequences 14 15 --init runs/demo-rare2/model.safetensors --epochs 2 --lr 2e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --seed 9 --out runs/demo-final2
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 16=500 17=500 --seed 0
	$(DEMO_TRAIN) --train-sequences 16 17 --init runs/demo-final2/model.safetensors --epochs 2 --lr 3e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 10 --out runs/demo-lovasz
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 20=500 21=500 --seed 0
	$(DEMO_TRAIN) --train-sequences 20 21 --init runs/demo-lovasz/model.safetensors --epochs 2 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 12 --out runs/demo-fresh
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 22=500 23=500 --seed 0
	$(DEMO_TRAIN) --train-sequences 22 23 --init runs/demo-fresh/model.safetensors --epochs 2 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 13 --out runs/demo-fresh2
	$(VENV)/bin/pointengine synthetic $(DEMO_DATA) --sequences 24=500 25=500 26=500 27=500 28=500 29=500 \
		30=500 31=500 --seed 0
	$(DEMO_TRAIN) --train-sequences 24 25 --init runs/demo-fresh2/model.safetensors --epochs 2 --lr 1e-3 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 15 --out runs/demo-rough
	$(DEMO_TRAIN) --train-sequences 26 27 --init runs/demo-rough/model.safetensors --epochs 2 --lr 5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 17 --out runs/demo-rough2
	$(DEMO_TRAIN) --train-sequences 28 29 --init runs/demo-rough2/model.safetensors --epochs 2 --lr 2.5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 19 --out runs/demo-rough3
	$(DEMO_TRAIN) --train-sequences 30 31 --init runs/demo-rough3/model.safetensors --epochs 2 --lr 1.5e-4 \
		--warmup-epochs 0.05 --class-balance 0.15 --lovasz-weight 1 --seed 21 --out runs/demo-rough4
	$(VENV)/bin/pointengine adjust-logits --checkpoint runs/demo-rough4/model.safetensors --data $(DEMO_DATA) \
		--sequences 30 31 --tau 0.45 --out models/demo.safetensors

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_conv.py
	$(PY) benchmarks/bench_minkunet.py
	$(PY) benchmarks/bench_spvcnn.py

# The extension built again with AddressSanitizer and UndefinedBehaviorSanitizer into build/sanitize
# (the normal build stays as it is), beside links to the package's Python files; the test suite and
# the fuzz tests run on it with the sanitizer runtimes preloaded into Python. Leak detection is off
# (CPython leaves its own allocations at exit); any other report aborts the run. The reports go to
# files, since pytest captures the output of the test that dies.
SANITIZE_DIR := build/sanitize
# Left out under the sanitizers, to keep CI within 30 minutes on a 2-core AVX2 machine (33 min with
# them): nvcc's compile check of the CUDA sources (2.5 min; it runs no code of the extension),
# torch.export and torch.compile tracing (1.5 min of Python), whole quantized models (1 min, most of
# it the portable bf16 kernel on whole scans), and the commands and whole-model runs (4 min: the
# command line in subprocesses, the demo, packaging, synthetic scans, the dataset benchmark, zoo
# determinism across thread counts). Their kernels run sanitized in the kernel, layer, model and fuzz
# tests; make test runs all.
SANITIZE_SKIP := $(addprefix --ignore=tests/,test_cuda_compile.py test_export.py test_quantize.py \
	test_cli.py test_cli_compress.py test_cli_segment.py test_cli_profile.py test_demo.py \
	test_packaging.py test_synthetic.py test_bench.py test_determinism.py)
FUZZ_EXAMPLES ?= 2000
SANITIZE_ENV = PYTHONPATH=$(CURDIR)/$(SANITIZE_DIR) PYTHONSAFEPATH=1 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:log_path=$(CURDIR)/$(SANITIZE_DIR)/reports/asan \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(CURDIR)/$(SANITIZE_DIR)/reports/ubsan

sanitize: setup
	mkdir -p $(SANITIZE_DIR)/pointengine
	find $(SANITIZE_DIR)/pointengine -maxdepth 1 -type l -delete
	for entry in pointengine/*; do case "$$entry" in *.so) ;; *) ln -s "$(CURDIR)/$$entry" $(SANITIZE_DIR)/pointengine/ ;; esac; done
	# --force hands every build to ninja, which recompiles only what changed (headers included).
	PE_SANITIZE=1 $(PY) setup.py -q build_ext --force --build-lib $(SANITIZE_DIR) --build-temp $(SANITIZE_DIR)/obj
	rm -rf $(SANITIZE_DIR)/reports && mkdir -p $(SANITIZE_DIR)/reports
	$(SANITIZE_ENV) $(PY) -c "import pointengine._C as c; assert c.__file__.startswith('$(CURDIR)/$(SANITIZE_DIR)/'), c.__file__"
	$(SANITIZE_ENV) $(PY) -m pytest -q --fuzz-examples=$(FUZZ_EXAMPLES) $(SANITIZE_SKIP) || (cat $(SANITIZE_DIR)/reports/* 2>/dev/null; exit 1)
	@if [ -n "$$(ls $(SANITIZE_DIR)/reports)" ]; then cat $(SANITIZE_DIR)/reports/*; exit 1; fi
