"""Optional metric loggers, as hooks: TensorBoard and trackio (``output.loggers``).

``metrics.jsonl`` stays the run's record; these hooks copy each step's metrics row and each held-out
evaluation there too, so a run can be watched in a dashboard. Only finite numbers are copied (NaN and
infinities are left out, as ``metrics.jsonl`` writes them as ``null``). Each logger's package is
imported by :func:`make_loggers`, so a missing one stops the run before it starts, and importing
``hone`` never imports either.

TensorBoard writes to ``<run dir>/tensorboard``; view it with ``tensorboard --logdir runs``. trackio
writes to its own local store (``$TRACKIO_DIR``, else ``~/.cache/huggingface/trackio``), project
``hone``, one run per run folder, with the run's config; view it with ``trackio show --project hone``.
Neither needs the network: trackio goes to a Hugging Face Space only when you set ``TRACKIO_SPACE_ID``
or ``TRACKIO_SERVER_URL`` yourself.

Both open lazily at the first point that reaches them, not only in ``on_start``: the evaluation before
the first step runs in the evaluation hook's ``on_start``, which comes before theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hone.config_loader import ConfigError
from hone.watch.hooks import Hook
from hone.watch.metrics import json_number

if TYPE_CHECKING:
    from hone.config import Config

PROJECT = "hone"  # the trackio project every run logs to (there is no config field for it)


def make_loggers(cfg: Config) -> list[Hook]:
    """A hook for each name in ``cfg.output.loggers``; a :class:`ConfigError` if its package is missing."""
    makers = {"tensorboard": TensorBoardLogger, "trackio": TrackioLogger}
    return [makers[name]() for name in dict.fromkeys(cfg.output.loggers)]


def _need(name: str, module: str) -> Any:
    """Import ``module`` for logger ``name``, or say in one line what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"output.loggers: {name!r} needs the {name} package: pip install 'hone[{name}]'") from None


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers in ``metrics`` as floats; anything else (NaN, infinities, None, strings) is left out.

    >>> scalars({"a": 1, "b": float("nan"), "c": None, "d": "x", "e": 0.5, "f": True})
    {'a': 1.0, 'e': 0.5, 'f': 1.0}
    """
    out = {}
    for key, value in metrics.items():
        try:
            number = json_number(value)
        except (TypeError, ValueError):
            continue
        if number is not None:
            out[key] = float(number)
    return out


def eval_tags(metrics: dict[str, Any]) -> dict[str, float]:
    """An evaluation's scalars under ``eval/``: the evaluation hook's keys already have a section
    (``eval/accuracy``, ``time/eval``) and keep it, as in ``metrics.jsonl``; a bare key gets ``eval/``.

    >>> eval_tags({"eval/accuracy": 0.5, "time/eval": 3.0, "loss": float("nan"), "length": 12})
    {'eval/accuracy': 0.5, 'time/eval': 3.0, 'eval/length': 12.0}
    """
    return {(key if "/" in key else f"eval/{key}"): value for key, value in scalars(metrics).items()}


class TensorBoardLogger(Hook):
    """Scalars in ``<run dir>/tensorboard``, flushed after every step. A resumed run drops the steps
    logged after its checkpoint (``purge_step``), so each step appears once."""

    def __init__(self):
        self.writer_class = _need("tensorboard", "torch.utils.tensorboard").SummaryWriter
        self.writer = None

    def _open(self, run):
        if self.writer is None:
            purge = run.step + 1 if run.step > 0 else None  # TensorBoard hides events at steps >= purge_step written before it
            self.writer = self.writer_class(log_dir=str(run.dir / "tensorboard"), purge_step=purge)
        return self.writer

    def on_start(self, run) -> None:
        self._open(run)

    def _write(self, run, step: int, values: dict[str, float]) -> None:
        writer = self._open(run)
        for tag, value in values.items():
            writer.add_scalar(tag, value, global_step=step)
        writer.flush()

    def after_update(self, run, step, row) -> None:
        self._write(run, step, scalars(row))

    def at_eval(self, run, step, metrics) -> None:
        self._write(run, step, eval_tags(metrics))

    def on_end(self, run) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TrackioLogger(Hook):
    """A trackio run named after the run folder, in project ``hone``, holding the run's config. A resumed
    run continues the same trackio run; a fresh one starts a new run even if the name is taken. trackio
    cannot drop the rows logged after a checkpoint, so steps between a checkpoint and a crash appear twice."""

    def __init__(self):
        self.trackio = _need("trackio", "trackio")
        self.started = False

    def _open(self, run) -> None:
        if not self.started:
            from hone.config import config_to_dict

            self.trackio.init(project=PROJECT, name=run.dir.name, config=config_to_dict(run.cfg),
                              resume="allow" if run.step > 0 else "never")
            self.started = True

    def on_start(self, run) -> None:
        self._open(run)

    def _log(self, run, step: int, values: dict[str, float]) -> None:
        self._open(run)
        if values:
            self.trackio.log(values, step=step)

    def after_update(self, run, step, row) -> None:
        self._log(run, step, scalars(row))

    def at_eval(self, run, step, metrics) -> None:
        self._log(run, step, eval_tags(metrics))

    def on_end(self, run) -> None:
        if self.started:
            self.trackio.finish()
            self.started = False
