"""Do an engine's samples end as often as the policy says they should?

    .venv/bin/python -m benchmarks.stop_calibration [--engine vllm|transformers] [--rounds 4]

Samples 64 quickstart prompts x 8 completions per round (temperature 1, at most 64 tokens) and
recomputes, with the trainer's fp32 forward, the probability of an end-of-sequence token at every
position each completion visited. For samples drawn from the policy, the expected number of
completions that end equals the sum of those probabilities, with variance sum p (1 - p); the script
prints both and the z-score. A length bias in an engine's sampler (a different stop set, a biased
noise kernel, precision lost near the end-of-sequence logit) shows up as |z| well above 2. It also
prints the mean completion length, which the hone-against-TRL benchmark compares across sides.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 64 prompts x 8 samples (each round has its own seed)")
    args = parser.parse_args()

    from hone.config import load_config
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.hf import end_of_sequence_ids
    from hone.trainer import setup

    run = setup(load_config("recipes/quickstart.yaml", [f"rollout.engine={args.engine}", f"output.dir={tempfile.mkdtemp()}", "output.progress=false"]))
    prompts = [run.rollouts.worker.env.prompt_ids(p) for p in run.rollouts.problems.take(64)]
    model = run.learner.policy.float().eval()
    stop = torch.tensor(end_of_sequence_ids(model, run.rollouts.worker.tokenizer))
    ended = expected = variance = 0.0
    lengths: list[int] = []
    began = time.perf_counter()
    for round_ in range(args.rounds):
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
              f"(z = {(ended - expected) / math.sqrt(variance):+.2f}), mean length {sum(lengths) / len(lengths):.2f} tokens, "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    run.rollouts.worker.close()


if __name__ == "__main__":
    main()
