"""Hooks: code that watches and steers a run at named points of the loop, without editing the loop.

The points, in the order a step reaches them::

    on_start(run)                      once, before the first step (after a resume: before the next one)
    after_rollout(run, step, groups)   the step's scored groups of trajectories
    after_batch(run, step, batch, stats)  the training batch (None: nothing to learn from) before the update
    after_update(run, step, row)       the update is done; ``row`` is the step's metrics row
    at_eval(run, step, metrics)        a held-out evaluation finished (called by the evaluation hook)
    at_save(run, step, folder)         a checkpoint was written (called by the checkpoint hook)
    on_end(run)                        once, after the last step

Evaluation, checkpointing, the adaptive KL controller, critic warm-up, the metrics log and the plots
are hooks themselves (``hone.watch.builtin``), as are the TensorBoard and trackio loggers
(``hone.watch.loggers``). Your own hook is any object with these methods; subclass :class:`Hook`
to get no-op defaults, and name it in a recipe as ``hooks: ["package.module:object"]`` (an
instance, or a class made with no arguments). A hook with state that a resumed run needs has
``state_dict()`` and ``load_state_dict(state)``; checkpoints save it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from pathlib import Path

    from hone.data.records import ScoredGroup, TrainBatch
    from hone.learner.batch import BatchStats


class HookProtocol(Protocol):
    def on_start(self, run) -> None: ...
    def after_rollout(self, run, step: int, groups: list[ScoredGroup]) -> None: ...
    def after_batch(self, run, step: int, batch: TrainBatch | None, stats: BatchStats) -> None: ...
    def after_update(self, run, step: int, row: dict[str, float]) -> None: ...
    def at_eval(self, run, step: int, metrics: dict[str, float]) -> None: ...
    def at_save(self, run, step: int, folder: Path) -> None: ...
    def on_end(self, run) -> None: ...


class Hook:
    """A hook that does nothing at every point; override the points you need."""

    def on_start(self, run) -> None:
        pass

    def after_rollout(self, run, step: int, groups: list[ScoredGroup]) -> None:
        pass

    def after_batch(self, run, step: int, batch: TrainBatch | None, stats: BatchStats) -> None:
        pass

    def after_update(self, run, step: int, row: dict[str, float]) -> None:
        pass

    def at_eval(self, run, step: int, metrics: dict[str, float]) -> None:
        pass

    def at_save(self, run, step: int, folder: Path) -> None:
        pass

    def on_end(self, run) -> None:
        pass


class Hooks(Hook):
    """Several hooks called in order at each point."""

    def __init__(self, hooks: Sequence[HookProtocol]):
        self.hooks = list(hooks)

    def on_start(self, run) -> None:
        for hook in self.hooks:
            hook.on_start(run)

    def after_rollout(self, run, step, groups) -> None:
        for hook in self.hooks:
            hook.after_rollout(run, step, groups)

    def after_batch(self, run, step, batch, stats) -> None:
        for hook in self.hooks:
            hook.after_batch(run, step, batch, stats)

    def after_update(self, run, step, row) -> None:
        for hook in self.hooks:
            hook.after_update(run, step, row)

    def at_eval(self, run, step, metrics) -> None:
        for hook in self.hooks:
            hook.at_eval(run, step, metrics)

    def at_save(self, run, step, folder) -> None:
        for hook in self.hooks:
            hook.at_save(run, step, folder)

    def on_end(self, run) -> None:
        for hook in self.hooks:
            hook.on_end(run)

    def state_dict(self) -> dict[str, Any]:
        """The state of every hook that has one, keyed by its place and class name."""
        return {f"{i}:{type(h).__name__}": h.state_dict() for i, h in enumerate(self.hooks) if hasattr(h, "state_dict")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, hook in enumerate(self.hooks):
            key = f"{i}:{type(hook).__name__}"
            if key in state and hasattr(hook, "load_state_dict"):
                hook.load_state_dict(state[key])


def load_hook(spec: str) -> HookProtocol:
    """The hook ``"package.module:object"`` names: the object itself, or an instance of it if it is a class."""
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, AttributeError, or the module's own import-time error
        raise ValueError(f"hooks: could not load {spec!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    hook = target() if isinstance(target, type) else target
    missing = [name for name in HookProtocol.__dict__ if not name.startswith("_") and callable(getattr(HookProtocol, name, None))
               and not callable(getattr(hook, name, None))]
    if missing:
        raise ValueError(f"hooks: {spec!r} has no {', '.join(missing)}; subclass hone.watch.hooks.Hook for no-op defaults")
    return hook
