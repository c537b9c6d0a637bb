"""hone's CPU sampler against vLLM's own, in one engine: tokens/s of the benchmark's rollouts with each.

    .venv/bin/python -m benchmarks.cpu_sampler [--rounds 5] [--min-new-tokens 64] [--eager]

One compiled bf16 vLLM engine as ``make bench`` runs it (the embedded model, the quickstart's first 8
prompts x 8 samples, at most 64 new tokens, temperature 1). Each round generates once with
``hone.rollout.engine.sampling`` and once with vLLM's Gumbel-max sampler (the order alternating),
so the two share the machine's state; it prints the median tokens/s of each and their ratio, and the
time of one sampling call of each at 64 rows of the vocabulary. With ``--min-new-tokens 64`` (the
default) every sample is 64 tokens, so both do the same work. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import islice

import torch


def use(llm, hone: bool) -> None:
    """Point ``llm``'s sampler at hone's (installed by the engine) or back at vLLM's."""
    def swap(worker) -> None:
        sampler = worker.model_runner.sampler.topk_topp_sampler
        sampler.hone_forward = ours = getattr(sampler, "hone_forward", sampler.forward)
        sampler.forward = ours if hone else ours.vllm_forward
    llm.collective_rpc(swap)


def sampling_ms(vocab: int, rows: int = 64, repeats: int = 50) -> tuple[float, float]:
    """Milliseconds of one draw at ``rows`` x ``vocab`` from log-probs: hone's, and vLLM's ``fused_gumbel_argmax``."""
    from hone.rollout.engine.sampling import sample_from_logprobs

    logits = torch.randn(rows, vocab) * 3
    logprobs = logits.log_softmax(-1)
    seeds = torch.randint(0, 2**31, (rows,), dtype=torch.long)
    def timed(fn) -> float:
        fn()
        began = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - began) / repeats * 1e3
    return timed(lambda: sample_from_logprobs(logprobs)), timed(lambda: torch.ops._C.fused_gumbel_argmax(logits, seeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-new-tokens", type=int, default=64)
    parser.add_argument("--eager", action="store_true", help="vLLM in eager mode (hone's default engine) rather than compiled (the bench's)")
    args = parser.parse_args()
    from hone.config import load_config
    from hone.data.tasks import make_task
    from hone.models import load_tokenizer, local_folder
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.vllm import VLLMEngine
    from hone.rollout.envs.single_turn import SingleTurnEnv
    from hone.runtime import configure_cpu, cpu_description

    configure_cpu(None)
    cfg = load_config("recipes/quickstart.yaml", [])
    env = SingleTurnEnv(load_tokenizer(cfg.model), None)
    prompts = [env.prompt_ids(p) for p in islice(make_task(cfg.task).train_problems(seed=0), 8)]
    engine = VLLMEngine(local_folder(cfg.model), dtype="bfloat16", seed=0, compile=not args.eager, max_model_len=256)
    if not engine.hone_sampler:
        raise SystemExit("benchmarks.cpu_sampler: hone's sampler is not installed here (not the CPU backend, or another vLLM)")
    params = SamplingParams(max_new_tokens=64, temperature=1.0, n=8, min_new_tokens=args.min_new_tokens)
    print(f"cpu: {cpu_description()}; vLLM {'eager' if args.eager else 'compiled'} bf16, 8 prompts x 8 samples, "
          f"{args.min_new_tokens}..64 new tokens, {args.rounds} rounds", flush=True)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for hone in (True, False):  # warm-up of each
        use(engine.llm, hone)
        engine.generate(prompts, params)
    for round_ in range(args.rounds):
        for hone in ((True, False) if round_ % 2 == 0 else (False, True)):
            use(engine.llm, hone)
            began = time.perf_counter()
            tokens = sum(len(g.completion_ids) for group in engine.generate(prompts, params) for g in group)
            rates[hone].append(tokens / (time.perf_counter() - began))
    ours, theirs = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"hone's sampler: {ours:6.0f} tokens/s {[round(r) for r in rates[True]]}")
    print(f"vLLM's sampler: {theirs:6.0f} tokens/s {[round(r) for r in rates[False]]}")
    print(f"ratio: {ours / theirs:.3f}x")
    vocab = len(engine.tokenizer)
    hone_ms, vllm_ms = sampling_ms(vocab)
    print(f"one draw at 64 x {vocab}: hone {hone_ms:.2f} ms, vLLM's fused_gumbel_argmax {vllm_ms:.2f} ms (from log-probs / logits)")


if __name__ == "__main__":
    main()
