"""Tasks: sources of problems with a fixed train/held-out split."""

from __future__ import annotations

from hone.data.tasks.arithmetic import ArithmeticTask
from hone.data.tasks.code import CodeTask
from hone.data.tasks.code_stdio import StdioTask
from hone.data.tasks.gsm8k import DatasetError, GSM8KTask
from hone.data.tasks.humaneval import HumanEvalTask
from hone.data.tasks.reviews import ReviewsTask

__all__ = ["ArithmeticTask", "CodeTask", "DatasetError", "GSM8KTask", "HumanEvalTask", "ReviewsTask", "StdioTask", "make_task"]


def make_task(cfg):
    """Build the task a ``TaskConfig`` describes."""
    own = {"instruction": cfg.instruction} if cfg.instruction is not None else {}  # else each task's own
    common = dict(system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    if cfg.name == "arithmetic":
        return ArithmeticTask(cfg.digits, tuple(cfg.ops), **common)
    if cfg.name in ("gsm8k", "code_stdio") and not cfg.path:
        need = "a JSONL file, a folder with train.jsonl/test.jsonl, or a hub id like openai/gsm8k" if cfg.name == "gsm8k" else "a JSONL file of problems with stdin/stdout tests"
        raise DatasetError(f"task.path: the {cfg.name} task needs {need}")
    if cfg.name == "gsm8k":
        return GSM8KTask(cfg.path, **common)
    if cfg.name == "reviews":
        return ReviewsTask(**common)
    if cfg.name == "code":
        return CodeTask(level=cfg.level, **common)
    if cfg.name == "code_stdio":
        return StdioTask(cfg.path, **common)
    if cfg.name == "humaneval":
        return HumanEvalTask(**common)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; expected arithmetic, gsm8k, reviews, code, code_stdio or humaneval")
