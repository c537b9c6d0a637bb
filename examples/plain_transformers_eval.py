"""Check a hone checkpoint with nothing but plain transformers: greedy answers on the held-out split.

    .venv/bin/python examples/plain_transformers_eval.py runs/quickstart/final [recipes/quickstart.yaml]

hone supplies only the problems (the task's fixed held-out split) and the math-verify judge; the
model is loaded with ``AutoModelForCausalLM.from_pretrained`` and decoded with ``generate``.
"""

from __future__ import annotations

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hone.config import load_config
from hone.rewards import math_verify
from hone.data.tasks import make_task


def main(checkpoint: str, recipe: str = "recipes/quickstart.yaml", batch_size: int = 50) -> None:
    cfg = load_config(recipe)
    problems = make_task(cfg.task).eval_problems()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    completions = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        texts = [tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=False) for p in chunk]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=cfg.rollout.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        completions += tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    scores = math_verify(completions, [p.answer for p in problems])
    correct = sum(s == 1.0 for s in scores)
    print(f"{checkpoint}: {correct}/{len(problems)} = {correct / len(problems):.3f} greedy accuracy (plain transformers, fp32)")
    for problem, completion in list(zip(problems, completions))[:5]:
        print(f"  {problem.id} = {problem.answer}: {completion!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
