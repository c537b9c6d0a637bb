"""Hooks that kill their own process with SIGKILL at a chosen moment, for the resume tests
(``hooks=[tests.kill_hooks:...]``, the step in ``HONE_KILL_STEP``)."""

import os
import signal

from hone.watch.hooks import Hook


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DuringStep(Hook):
    """Dies in the middle of step ``HONE_KILL_STEP``: its rollouts are done, its update is not."""

    def after_rollout(self, run, step, groups):
        if step == int(os.environ["HONE_KILL_STEP"]):
            _kill()


class WhileSaving(Hook):
    """Dies while the checkpoint of step ``HONE_KILL_STEP`` is being written: the policy is on disk, the rest not yet."""

    def on_start(self, run):
        from hone.watch import checkpoint

        write = checkpoint.write_model

        def dying(model, tokenizer, staging, **kwargs):
            write(model, tokenizer, staging, **kwargs)
            if staging.name.startswith(f".step-{os.environ['HONE_KILL_STEP']}."):
                _kill()

        checkpoint.write_model = dying
