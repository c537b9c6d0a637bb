"""Training progress: a live rich bar on a terminal, one plain line per step everywhere else.

On a terminal the bar shows steps done, elapsed time, the ETA and the latest fields
(``reward 0.41  acc 0.53  s/step 12.3``). When the bar is disabled or the output is not a terminal
(CI logs, ``make demo | tee``) each update prints one line instead::

    step 3/50  reward 0.41  acc 0.53  s/step 12.3  eta 9m38s

The ETA is (steps left) x (mean seconds per step since the first update of this run), computed here
rather than by rich, whose speed estimate only looks at the last 30 seconds and so goes blank when a
step takes longer than that.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def format_duration(seconds: float) -> str:
    """A short duration: ``42s``, ``9m12s``, ``2h03m``.

    >>> format_duration(42.4), format_duration(552), format_duration(7380)
    ('42s', '9m12s', '2h03m')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_value(value: float | int | None) -> str:
    """A field value in at most a few characters.

    >>> format_value(0.41), format_value(0.41234), format_value(12.34), format_value(1234.5), format_value(None)
    ('0.41', '0.412', '12.3', '1234', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def format_fields(fields: dict[str, float | int | None]) -> str:
    """``{"reward": 0.41, "acc": 0.53}`` as ``reward 0.41  acc 0.53``."""
    return "  ".join(f"{name} {format_value(value)}" for name, value in fields.items())


class Progress:
    """Progress of a training run of ``total_steps`` steps; use as a context manager.

    ``update(step, reward=..., acc=...)`` reports that ``step`` steps are done (1-based, so the
    last call is ``update(total_steps)``); ``s/step`` is the mean wall-clock time per step unless
    given as ``s_per_step``.
    ``start_step`` is the step a resumed run starts after, so its ETA counts only new steps.
    ``stream`` and ``clock`` default to ``sys.stdout`` and ``time.monotonic`` (tests replace them).
    """

    def __init__(
        self,
        total_steps: int,
        enabled: bool = True,
        *,
        start_step: int = 0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total_steps = total_steps
        self.start_step = start_step
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(enabled and isatty is not None and isatty())
        self._started_at: float | None = None
        self._anchor: tuple[float, int] | None = None  # (time, step) of the first update
        self._bar = None
        self._task = None

    def __enter__(self) -> "Progress":
        self._started_at = self.clock()
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("step"),
                MofNCompleteColumn(),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}"),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
            )
            self._task = self._bar.add_task("train", total=self.total_steps, completed=self.start_step, eta="-", info="")
            self._bar.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def update(self, step: int, **fields: float | int | None) -> str:
        """Show that ``step`` steps are done, with ``fields``; returns the plain-text line."""
        now = self.clock()
        if self._started_at is None:
            self._started_at = now
        if self._anchor is None:  # first update: time since start, which includes any eval before step 1
            done, elapsed = step - self.start_step, now - self._started_at
            self._anchor = (now, step)
        else:  # later: time since the first update, so a long eval before training skews only step 1
            done, elapsed = step - self._anchor[1], now - self._anchor[0]
        seconds_per_step = elapsed / done if done > 0 else None
        fields = dict(fields)
        if "s_per_step" in fields:  # keyword arguments cannot spell "s/step"
            fields["s/step"] = fields.pop("s_per_step")
        elif "s/step" not in fields and seconds_per_step is not None:
            fields["s/step"] = seconds_per_step
        eta = format_duration((self.total_steps - step) * seconds_per_step) if seconds_per_step is not None else "-"
        info = format_fields(fields)
        line = f"step {step}/{self.total_steps}  {info}  eta {eta}" if info else f"step {step}/{self.total_steps}  eta {eta}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, eta=eta, info=info)
        else:
            print(line, file=self.stream, flush=True)
        return line

    def note(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar when it is live), e.g. an eval result."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)
