"""Tasks: sources of problems with a fixed train/held-out split."""

from __future__ import annotations

from hone.config import TaskConfig
from hone.tasks.arithmetic import ArithmeticTask
from hone.tasks.code import CodeTask
from hone.tasks.code_stdio import StdioTask
from hone.tasks.gsm8k import DatasetError, GSM8KTask
from hone.tasks.humaneval import HumanEvalTask
from hone.tasks.reviews import ReviewsTask

__all__ = ["ArithmeticTask", "CodeTask", "DatasetError", "GSM8KTask", "HumanEvalTask", "ReviewsTask", "StdioTask", "make_task"]


def make_task(cfg):
    """Build the task a ``TaskConfig`` describes."""
    if cfg.name == "arithmetic":
        return ArithmeticTask(cfg.digits, tuple(cfg.ops), cfg.instruction, cfg.system_prompt, cfg.eval_size, cfg.seed)
    if cfg.name == "gsm8k":
        if not cfg.path:
            raise DatasetError("task.path: the gsm8k task needs a JSONL file, a folder with train.jsonl/test.jsonl, or a hub id like openai/gsm8k")
        return GSM8KTask(cfg.path, cfg.instruction, cfg.system_prompt, cfg.eval_size, cfg.seed)
    if cfg.name == "reviews":
        return ReviewsTask(cfg.instruction, cfg.system_prompt, cfg.eval_size, cfg.seed)
    # Code tasks ask for code: they keep their own instruction unless the recipe sets one.
    own = {"instruction": cfg.instruction} if cfg.instruction != TaskConfig.instruction else {}
    if cfg.name == "code":
        return CodeTask(level=cfg.level, system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    if cfg.name == "code_stdio":
        if not cfg.path:
            raise DatasetError("task.path: the code_stdio task needs a JSONL file of problems with stdin/stdout tests")
        return StdioTask(cfg.path, system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    if cfg.name == "humaneval":
        return HumanEvalTask(system_prompt=cfg.system_prompt, eval_size=cfg.eval_size, seed=cfg.seed, **own)
    raise ValueError(f"task.name: unknown task {cfg.name!r}; expected arithmetic, gsm8k, reviews, code, code_stdio or humaneval")
