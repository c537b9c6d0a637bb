"""Do an engine's samples end as often as the policy says they should?

    .venv/bin/python -m benchmarks.stop_calibration [--engine vllm|transformers|trl] [--rounds 4]

Samples 64 quickstart prompts x 8 completions per round (temperature 1, at most 64 tokens) and
recomputes, with the trainer's fp32 forward, the probability of an end-of-sequence token at every
position each completion visited. For samples drawn from the policy, the expected number of
completions that end equals the sum of those probabilities, with variance sum p (1 - p); the script
prints both and the z-score. A length bias in an engine's sampler (a different stop set, a biased
noise kernel, precision lost near the end-of-sequence logit) shows up as |z| well above 2. It also
prints the mean completion length and its standard error, which the hone-against-TRL benchmark
compares across sides. ``--engine trl`` samples as the benchmark's TRL side does (GRPOTrainer without
vLLM): transformers' ``generate`` over the fp32 weights under bf16 autocast (accelerate's mixed
precision), 64 left-padded rows a call, ``top_k`` 0 and ``top_p`` 1.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from typing import NamedTuple

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="vllm", choices=["vllm", "transformers", "trl"])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 64 prompts x 8 samples (each round has its own seed)")
    args = parser.parse_args()

    from hone.config import load_config
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.hf import end_of_sequence_ids
    from hone.trainer import setup

    engine = "transformers" if args.engine == "trl" else args.engine
    run = setup(load_config("recipes/quickstart.yaml", [f"rollout.engine={engine}", f"output.dir={tempfile.mkdtemp()}", "output.progress=false"]))
    prompts = [run.rollouts.worker.env.prompt_ids(p) for p in run.rollouts.problems.take(64)]
    model = run.learner.policy.float().eval()
    stop = torch.tensor(end_of_sequence_ids(model, run.rollouts.worker.tokenizer))
    ended = expected = variance = 0.0
    lengths: list[int] = []
    began = time.perf_counter()
    for round_ in range(args.rounds):
        if args.engine == "trl":
            groups = trl_generate(model, run.rollouts.worker.tokenizer, prompts, n=8, seed=1000 + round_, stop=stop.tolist())
        else:
            groups = run.rollouts.worker.engine.generate(prompts, SamplingParams(max_new_tokens=64, temperature=1.0, n=8, seed=1000 + round_))
        for sample in (g for group in groups for g in group):
            ids = torch.tensor(sample.prompt_ids + sample.completion_ids)
            with torch.no_grad():  # the logits at the positions that predicted each completion token
                logits = model(input_ids=ids[None]).logits[0, len(sample.prompt_ids) - 1 : len(ids) - 1].float()
            p_stop = torch.softmax(logits, -1)[:, stop].sum(-1)
            expected += float(p_stop.sum())
            variance += float((p_stop * (1 - p_stop)).sum())
            ended += sample.finish_reason == "stop"
            lengths.append(len(sample.completion_ids))
        print(f"round {round_ + 1}: {len(lengths)} samples, {ended:.0f} ended against {expected:.1f} expected "
              f"(z = {(ended - expected) / math.sqrt(variance):+.2f}), mean length {statistics.mean(lengths):.2f} tokens "
              f"(standard error {statistics.stdev(lengths) / math.sqrt(len(lengths)):.2f}), "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    run.rollouts.worker.close()


class _Sample(NamedTuple):
    prompt_ids: list[int]
    completion_ids: list[int]
    finish_reason: str


def trl_generate(model, tokenizer, prompts: list[list[int]], *, n: int, seed: int, stop: list[int], rows: int = 64,
                 max_new_tokens: int = 64) -> list[list[_Sample]]:
    """``n`` samples of each prompt the way TRL's GRPOTrainer draws them on the CPU without vLLM: each prompt
    repeated ``n`` times, ``rows`` left-padded rows per ``generate`` call under bf16 autocast, cut after the first
    end-of-sequence token."""
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    flat = [p for p in prompts for _ in range(n)]
    samples: list[_Sample] = []
    for first in range(0, len(flat), rows):
        chunk = flat[first : first + rows]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new_tokens, repetition_penalty=1.0, eos_token_id=stop, pad_token_id=pad)
        for prompt, row in zip(chunk, out[:, width:].tolist()):
            end = next((i for i, t in enumerate(row) if t in stop), None)
            samples.append(_Sample(prompt, row if end is None else row[: end + 1], "length" if end is None else "stop"))
    return [samples[i : i + n] for i in range(0, len(samples), n)]


if __name__ == "__main__":
    main()
