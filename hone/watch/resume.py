"""Checkpoints a run can resume from, exactly.

A resumable checkpoint ``checkpoints/step-N`` is the plain Hugging Face folder of the policy (LoRA:
with ``adapter/``), the critic's weights in ``critic/``, and ``trainer_state.pt``: the learner's
optimizer (both parameter groups), learning-rate clocks, KL coefficient and weight version; every
random generator (torch's CPU and CUDA ones, Python's, NumPy's); the rollout side's state (the
position in the problem stream and, with Ray and ``distributed.max_staleness`` > 0, the groups
already generated ahead for later steps, so no in-flight sample is lost); the hooks' state; and the step. The whole folder is written beside its place and renamed
into it (``hone.watch.checkpoint``), so a crash while writing leaves the previous checkpoint whole.

With ``train.resume: true`` a run loads the newest such checkpoint, drops the metrics rows logged
after it, and goes on from the next step. On the CPU with the transformers engine the steps after
the checkpoint repeat those of a run that was never interrupted, number for number: each step
samples with a seed made from the run's seed and the step (``hone.rollout.source.step_seed``), and
everything else that draws (the problem stream, Python's, NumPy's and torch's generators) is
restored. vLLM seeds the same way, but its kernels need not repeat their floating-point sums
from one process to the next, so a resumed vLLM run repeats the uninterrupted one only as far as
those sums do (README: the measured comparison).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from hone.watch.checkpoint import latest_checkpoint, prune_checkpoints, save_checkpoint, write_model

TRAINER_STATE = "trainer_state.pt"


def save_run(run, folder: Path, *, resumable: bool) -> Path:
    """Write the run's checkpoint at ``run.step`` to ``folder``; with ``resumable`` also everything a resume needs."""
    cfg, learner = run.cfg, run.learner

    def also(staging: Path) -> None:
        if learner.critic is not None:  # a token-classification model, or the shared value head alone
            critic = learner.critic.model if hasattr(learner.critic, "model") else learner.critic
            (staging / "critic").mkdir()
            write_model(critic, None, staging / "critic", extra={"step": run.step, "kind": cfg.critic.kind})
        if resumable:
            torch.save(training_state(run), staging / TRAINER_STATE)

    save_checkpoint(learner.policy, run.rollouts.tokenizer, folder, merge_lora=cfg.train.lora.merge_on_save,
                    extra={"step": run.step, "kl_coef": learner.kl_coef}, also=also)
    if folder.parent.name == "checkpoints":
        prune_checkpoints(folder.parent, cfg.output.keep_last)
    return folder


def training_state(run) -> dict:
    return {"step": run.step, "learner": run.learner.state_dict(), "rng": rng_state(), "rollouts": run.rollouts.state_dict(),
            "hooks": run.hooks.state_dict()}


def restore_run(run, folder: Path) -> None:
    """Put ``run`` (just built from its configuration) back in the state saved at ``folder``."""
    state = torch.load(folder / TRAINER_STATE, weights_only=False)  # our own file: optimizer state, RNG tuples
    run.learner.load_weights(folder)
    run.learner.load_state_dict(state["learner"])
    run.rollouts.load_state_dict(state["rollouts"] if "rollouts" in state else {"problems": state["problems"]})  # or an older checkpoint's
    run.rollouts.publish(run.learner.version, run.learner.weights())
    run.hooks.load_state_dict(state["hooks"])
    run.logger.keep_until(state["step"])
    run.step = state["step"]
    set_rng_state(state["rng"])  # last: loading the pieces above must not move a generator past the saved point


def resumable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint in ``run_dir`` a run can resume from; leftovers of a write that crashed are removed."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    for staging in root.glob(".step-*.tmp-*"):
        shutil.rmtree(staging, ignore_errors=True)
    return latest_checkpoint(root, TRAINER_STATE)


def rng_state() -> dict:
    import numpy as np

    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
