"""Tasks: sources of problems with a fixed train/held-out split."""

from __future__ import annotations

from hone.tasks.arithmetic import ArithmeticTask
from hone.tasks.gsm8k import DatasetError, GSM8KTask

__all__ = ["ArithmeticTask", "DatasetError", "GSM8KTask", "make_task"]


def make_task(cfg):
    """Build the task a ``TaskConfig`` describes."""
    if cfg.name == "arithmetic":
        return ArithmeticTask(cfg.digits, tuple(cfg.ops), cfg.instruction, cfg.system_prompt, cfg.eval_size, cfg.seed)
    if cfg.name == "gsm8k":
        if not cfg.path:
            raise DatasetError("task.path: the gsm8k task needs a JSONL file, a folder with train.jsonl/test.jsonl, or a hub id like openai/gsm8k")
        return GSM8KTask(cfg.path, cfg.instruction, cfg.system_prompt, cfg.eval_size, cfg.seed)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; expected arithmetic or gsm8k")
