"""Preference pairs: read them from JSONL or a `datasets` hub id, or make them with a simulated human.

Accepted row layouts (one JSON object per line, or one dataset row):

- ``{"prompt": str | messages, "chosen": str, "rejected": str, "margin"?: float}``
- conversational (TRL's layout): ``chosen`` and ``rejected`` are message lists ending with the
  assistant's answer; the prompt is the messages before it (or ``prompt`` when given).
- Anthropic HH (``Anthropic/hh-rlhf``): ``chosen`` and ``rejected`` are whole transcripts,
  ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``; the shared turns become the prompt and the last
  assistant turn the answer.

>>> parse_row({"chosen": "\\n\\nHuman: Hi?\\n\\nAssistant: Hello!", "rejected": "\\n\\nHuman: Hi?\\n\\nAssistant: Go away."}, "row 1")
PreferencePair(prompt=({'role': 'user', 'content': 'Hi?'},), chosen='Hello!', rejected='Go away.', margin=0.0)
>>> parse_row({"prompt": "Hi?", "chosen": "Hello!"}, "data.jsonl line 3")
Traceback (most recent call last):
...
hone.rlhf.preferences.PreferenceDataError: data.jsonl line 3: missing 'rejected'; expected fields prompt, chosen, rejected (or chosen/rejected transcripts)
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from hone.data.jsonl import read_jsonl
from hone.data.records import PreferencePair, Problem


class PreferenceDataError(ValueError):
    """Preference data that cannot be read; the message names the file or dataset and the row."""


_EXPECTED = "expected fields prompt, chosen, rejected (or chosen/rejected transcripts)"
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def load_preferences(spec: str, split: str = "train") -> list[PreferencePair]:
    """Pairs from a JSONL file or a `datasets` hub id."""
    path = Path(spec)
    if path.suffix == ".jsonl" or path.is_file():
        return read_jsonl(path, parse_row, PreferenceDataError, what="reward_model.data: file")
    try:
        from datasets import load_dataset
    except ImportError:
        raise PreferenceDataError(f"reward_model.data: {spec!r} is not a file; reading a hub dataset needs `pip install datasets`") from None
    try:
        rows = load_dataset(spec, split=split)
    except Exception as exc:  # a missing dataset, a bad split, no network
        raise PreferenceDataError(f"reward_model.data: cannot load dataset {spec!r} split {split!r} ({str(exc).splitlines()[0]})") from None
    return [parse_row(row, f"dataset {spec} row {i}") for i, row in enumerate(rows)]


def parse_row(row: Any, where: str) -> PreferencePair:
    """One row in any accepted layout as a :class:`PreferencePair`."""
    if not isinstance(row, dict):
        raise PreferenceDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise PreferenceDataError(f"{where}: missing {key!r}; {_EXPECTED}")
    margin = row.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise PreferenceDataError(f"{where}: margin={margin!r}; expected a finite number")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):  # conversational
        before, chosen = _split_messages(chosen, where, "chosen")
        before_rejected, rejected = _split_messages(rejected, where, "rejected")
        if before != before_rejected:
            raise PreferenceDataError(f"{where}: chosen and rejected have different conversations before the answer")
        messages = (_messages(prompt, where) if prompt is not None else []) + before
        if not messages:
            raise PreferenceDataError(f"{where}: no prompt: give 'prompt' or put the user's turn before the answers")
        return PreferencePair(tuple(messages), chosen, rejected, float(margin))
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise PreferenceDataError(f"{where}: chosen and rejected must both be strings or both message lists")
    if prompt is None:
        if not _HH_TURN.search(chosen):
            raise PreferenceDataError(f"{where}: missing 'prompt' and chosen is not a Human/Assistant transcript; {_EXPECTED}")
        prompt_c, chosen = _split_transcript(chosen, where)
        prompt_r, rejected = _split_transcript(rejected, where)
        if prompt_c != prompt_r:
            raise PreferenceDataError(f"{where}: chosen and rejected transcripts differ before the last Assistant turn")
        return PreferencePair(tuple(prompt_c), chosen, rejected, float(margin))
    return PreferencePair(tuple(_messages(prompt, where)), chosen, rejected, float(margin))


def _messages(prompt: Any, where: str) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    ok = isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    if not ok:
        raise PreferenceDataError(f"{where}: prompt must be a string or a list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _split_messages(messages: list, where: str, key: str) -> tuple[list[dict], str]:
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "assistant":
        raise PreferenceDataError(f"{where}: {key} must end with an assistant message")
    return _messages(messages[:-1], where) if messages[:-1] else [], str(messages[-1]["content"])


def _split_transcript(text: str, where: str) -> tuple[list[dict], str]:
    parts = _HH_TURN.split(text)  # ["", "Human", "...", "Assistant", "...", ...]
    turns = [{"role": "user" if who == "Human" else "assistant", "content": body.strip()} for who, body in zip(parts[1::2], parts[2::2])]
    if not turns or turns[-1]["role"] != "assistant":
        raise PreferenceDataError(f"{where}: transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1]["content"]


def write_preferences(pairs: Sequence[PreferencePair], path: Path, extra: Sequence[dict] | None = None) -> None:
    """One JSON row per pair, readable by :func:`load_preferences`; ``extra`` adds fields per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": list(p.prompt), "chosen": p.chosen, "rejected": p.rejected, "margin": p.margin, **(extra[i] if extra else {})} for i, p in enumerate(pairs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def label_pairs(problems: Sequence[Problem], answers_a: Sequence[str], answers_b: Sequence[str], gold: Callable, beta: float,
                seed: int) -> tuple[list[PreferencePair], list[dict]]:
    """A simulated human labels each pair: prefers ``a`` with probability ``sigmoid(beta * (gold_a - gold_b))``.

    The Bradley-Terry noise model of the reward model itself, so the best any reward model can do on
    these labels is the labeller's *noise ceiling*: the mean of ``max(p, 1 - p)`` over pairs,
    returned per pair as ``p_label`` (the chance of the label it gave) with the gold scores.
    """
    rng = random.Random(seed)
    gold_a = gold(list(answers_a), [p.answer for p in problems])
    gold_b = gold(list(answers_b), [p.answer for p in problems])
    pairs, info = [], []
    for problem, a, b, ga, gb in zip(problems, answers_a, answers_b, gold_a, gold_b):
        if ga is None or gb is None:
            continue  # the gold labeller could not score one of them: no label
        p = 1.0 / (1.0 + math.exp(-beta * (ga - gb)))
        prefers_a = rng.random() < p
        chosen, rejected, g_c, g_r = (a, b, ga, gb) if prefers_a else (b, a, gb, ga)
        pairs.append(PreferencePair(problem.messages, chosen, rejected))
        info.append({"gold_chosen": g_c, "gold_rejected": g_r, "p_label": p if prefers_a else 1 - p, "ceiling": max(p, 1 - p)})
    return pairs, info
