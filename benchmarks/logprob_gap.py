"""How far the trainer's log-probs are from the engine's, in fp32 and in hone's bf16 update forward.

    .venv/bin/python -m benchmarks.logprob_gap [--prompts 16]

vLLM (bf16) samples ``--prompts`` quickstart prompts x 8 at temperature 1 with the embedded model and
reports each sampled token's log-prob. The trainer then scores the same tokens with the same weights:
in fp32, and under bf16 autocast as the update runs (``train.bf16``). Printed
per trainer forward, over all sampled tokens: the mean, 99th percentile and largest absolute gap to
vLLM's log-probs, the spread of the importance ratio exp(trainer - vLLM) (what ``algorithm.tis_cap``
corrects), and the gap to the fp32 forward. Nothing here is a test; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
from itertools import islice

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    from hone.config import load_config
    from hone.data.records import Trajectory
    from hone.data.tasks import make_task
    from hone.learner.batch import collate
    from hone.learner.forward import logprobs_no_grad
    from hone.models import load_model, load_tokenizer, local_folder
    from hone.rollout.engine import SamplingParams
    from hone.rollout.engine.vllm import VLLMEngine
    from hone.rollout.envs.single_turn import SingleTurnEnv
    from hone.runtime import cpu_description

    cfg = load_config("recipes/quickstart.yaml", [])
    tokenizer = load_tokenizer(cfg.model)
    env = SingleTurnEnv(tokenizer, None)
    problems = list(islice(make_task(cfg.task).train_problems(seed=0), args.prompts))
    engine = VLLMEngine(local_folder(cfg.model), dtype="bfloat16", seed=0, max_model_len=256)
    groups = engine.generate([env.prompt_ids(p) for p in problems], SamplingParams(max_new_tokens=64, temperature=1.0, n=8))
    batch = collate([Trajectory.single_turn(p, g.prompt_ids, g.completion_ids, g.text, g.logprobs, g.finish_reason)
                     for p, gs in zip(problems, groups) for g in gs], tokenizer.pad_token_id)
    model = load_model(cfg.model).eval()
    mask = batch.completion_mask.bool()
    engine_lp = batch.sampling_logprobs[mask]
    forwards = {"fp32": logprobs_no_grad(model, batch, 64, False, None)[mask],
                "bf16 (train.bf16)": logprobs_no_grad(model, batch, 64, True, None)[mask]}
    print(f"cpu: {cpu_description()}; {int(mask.sum())} sampled tokens (vLLM bf16, temperature 1), mean log-prob {float(engine_lp.mean()):.3f}")
    for name, lp in forwards.items():
        gap, to_fp32 = (lp - engine_lp).abs(), (lp - forwards["fp32"]).abs()
        print(f"{name:18s} against vLLM: mean {float(gap.mean()):.4f}, p99 {float(gap.quantile(0.99)):.3f}, largest {float(gap.max()):.3f}, "
              f"importance ratio std {float((lp - engine_lp).exp().std()):.4f}; against fp32: mean {float(to_fp32.mean()):.4f}, "
              f"largest {float(to_fp32.max()):.3f}")


if __name__ == "__main__":
    main()
