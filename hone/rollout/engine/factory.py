"""Build the rollout engine a configuration's rollout section names."""

from __future__ import annotations

from typing import Iterable


def resolve_engine(name: str) -> str:
    """``auto`` is vLLM where it is installed, else transformers."""
    if name != "auto":
        return name
    from hone.rollout.engine.vllm import vllm_available

    return "vllm" if vllm_available() else "transformers"


def derive_max_model_len(prompt_lengths: Iterable[int], budget: int) -> int:
    """The longest prompt plus the generation budget, rounded up to a multiple of 64.

    >>> derive_max_model_len([10, 70], 64)
    192
    """
    longest = max(prompt_lengths, default=0) + budget
    return -(-longest // 64) * 64


def make_engine(rollout, model: str, policy, tokenizer, *, seed: int, max_model_len: int, shared: bool = True):
    """The engine ``rollout.engine`` names: vLLM loads ``model`` itself; transformers generates with ``policy``
    (the learner's own model when ``shared``, else a copy that ``load_weights`` fills)."""
    from hone.rollout.engine.hf import HFEngine

    if resolve_engine(rollout.engine) == "vllm":
        from hone.models import local_folder
        from hone.rollout.engine.vllm import VLLMEngine

        return VLLMEngine(local_folder(model), dtype="bfloat16" if rollout.bf16 else "float32", seed=seed, compile=rollout.compile,
                          max_model_len=max_model_len, gpu_memory_utilization=rollout.gpu_memory_utilization,
                          kv_cache_gib=rollout.kv_cache_gib)
    return HFEngine(policy, tokenizer, shared=shared, batch_size=rollout.batch_size, bf16=rollout.bf16)
