"""A Bradley-Terry reward model: a scalar head on a causal-LM backbone, trained on preference pairs.

The model is a Hugging Face ``AutoModelForSequenceClassification`` with one label, so the saved
folder loads with plain transformers and scores exactly as here::

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    score = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0]

The score is read at the last token of the rendered conversation. Batches are left-padded, so the
last position is always a real token; ``pad_token_id`` is written into the config because the
sequence-classification heads of transformers look for the last non-padding token with it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hone.algorithms import bradley_terry_loss, pairwise_accuracy
from hone.watch.checkpoint import save_checkpoint
from hone.data.padding import left_pad, positions
from hone.data.records import PreferencePair, Trajectory
from hone.rewards import RewardResult
from hone.rewards.base import _check_scores
from hone.rewards.pool import _one_line
from hone.runtime import allocate_state, autocast, device_of

logger = logging.getLogger(__name__)


def load_reward_model(spec: str, *, base: bool = False):
    """``(model, tokenizer)``: a trained reward model folder, or (``base=True``) a fresh scalar head on ``spec``'s backbone."""
    from transformers import AutoModelForSequenceClassification

    from hone.models import ModelLoadError, load_tokenizer, local_folder

    tokenizer = load_tokenizer(spec)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(local_folder(spec), num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"reward model {spec!r}: cannot load ({str(exc).splitlines()[0]})") from exc
    if not base and model.config.num_labels != 1:
        raise ModelLoadError(f"reward model {spec!r}: has {model.config.num_labels} labels; expected a one-label (scalar) head")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode(tokenizer, prompt: Sequence[dict], answer: str, max_length: int) -> list[int]:
    """Token ids of the conversation ``prompt`` + the assistant's ``answer``; cut from the left past ``max_length``."""
    text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[-max_length:]


def scores(model, sequences: list[list[int]], pad_id: int, *, bf16: bool = False) -> torch.Tensor:
    """``(N,)`` float32 score of each token sequence (left-padded into one batch)."""
    device = device_of(model)
    ids, mask = (t.to(device) for t in left_pad(sequences, pad_id))
    with autocast(device, bf16):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask))
    return out.logits[:, 0].float()


@torch.no_grad()
def score_texts(model, tokenizer, prompts: Sequence[Sequence[dict]], answers: Sequence[str], *, batch_size: int = 16,
                max_length: int = 512, bf16: bool = False) -> list[float]:
    """The reward model's score of each (prompt, answer)."""
    model.eval()
    encoded = [encode(tokenizer, p, a, max_length) for p, a in zip(prompts, answers)]
    out: list[float] = []
    for i in range(0, len(encoded), batch_size):
        out += scores(model, encoded[i : i + batch_size], tokenizer.pad_token_id, bf16=bf16).tolist()
    return out


class RewardModelScorer:
    """Scores trajectories with a reward model (component ``reward_model``) plus the run's other rewards.

    The other components (``text_scorer``, a ``RewardScorer``) are scored as usual and added with
    their weights, so a gold score can ride along at weight 0 and be logged beside the proxy.
    The reward model is held to the rule every reward follows: a batch whose forward raises (out of
    memory, say) and a non-finite score are ``None`` for the items concerned, counted in
    ``faults["reward_model"]`` and logged, never a crash and never 0.
    """

    name = "reward_model"

    def __init__(self, model, tokenizer, weight: float, text_scorer, *, bf16: bool = False, batch_size: int = 16):
        self.model, self.tokenizer, self.weight = model.eval().requires_grad_(False), tokenizer, weight
        self.text_scorer, self.bf16, self.batch_size = text_scorer, bf16, batch_size

    def score(self, trajectories: Sequence[Trajectory]) -> RewardResult:
        """Each trajectory's prompt and final model turn (``.text``) through the reward model, plus the text rewards."""
        proxy = self._proxy(trajectories)
        rest = self.text_scorer.score(trajectories)
        total = [None if p is None or t is None else self.weight * p + t for p, t in zip(proxy, rest.total)]
        faults = sum(p is None for p in proxy)
        return RewardResult(total=total, components={self.name: proxy, **rest.components}, faults={self.name: faults, **rest.faults})

    def _proxy(self, trajectories: Sequence[Trajectory]) -> list[float | None]:
        """The reward model's scores, one forward batch at a time so that a batch that raises masks only itself."""
        out: list[float | None] = []
        first_problem = None
        for i in range(0, len(trajectories), self.batch_size):
            batch = trajectories[i : i + self.batch_size]
            try:
                values = score_texts(self.model, self.tokenizer, [t.problem.messages for t in batch], [t.text for t in batch],
                                     batch_size=self.batch_size, bf16=self.bf16)
            except Exception as exc:
                scores, problem = [None] * len(batch), f"raised {_one_line(exc)}"
            else:
                scores, problem = _check_scores(values, len(batch))
            out += scores
            first_problem = first_problem or problem
        faults = sum(s is None for s in out)
        if faults:  # the same line RewardScorer logs for any other reward
            logger.warning("reward %r: %d/%d items could not be scored (first: %s)", self.name, faults, len(out), first_problem)
        return out


@dataclass
class RewardModelReport:
    folder: Path
    train_pairs: int
    eval_pairs: int
    eval_accuracy: float  # held-out pairwise accuracy (ties count half)
    train_accuracy: float  # over the last epoch's batches, as trained
    seconds: float


def split_pairs(pairs: list[PreferencePair], eval_fraction: float, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Shuffle with ``seed`` and hold out ``eval_fraction`` of the pairs (at least one when any)."""
    order = list(pairs)
    random.Random(seed).shuffle(order)
    held = max(1, round(len(order) * eval_fraction)) if eval_fraction > 0 and len(order) > 1 else 0
    return order[held:], order[:held]


def train_reward_model(pairs: list[PreferencePair], cfg, out_dir: Path, *, seed: int = 0, bf16: bool = True,
                       device: torch.device | str = "cpu", log=print) -> RewardModelReport:
    """Fit a Bradley-Terry reward model on ``pairs`` as ``cfg`` (a RewardModelConfig) says, save it to ``out_dir``.

    ``cfg.base`` must already be resolved to a model spec (the trainer passes the run's model when it is null).
    """
    began = time.perf_counter()
    torch.manual_seed(seed)
    train, held = split_pairs(pairs, cfg.eval_fraction, seed)
    if not train:
        raise ValueError(f"reward_model: {len(pairs)} preference pairs leave none to train on; need at least 2")
    model, tokenizer = load_reward_model(cfg.base, base=True)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    allocate_state(optimizer)  # before the first batch's activations take the heap (hone.runtime)
    encode_pair = lambda p: (encode(tokenizer, p.prompt, p.chosen, cfg.max_length), encode(tokenizer, p.prompt, p.rejected, cfg.max_length))  # noqa: E731
    train_ids, held_ids = [encode_pair(p) for p in train], [encode_pair(p) for p in held]
    rng, accuracy = random.Random(seed), float("nan")
    for epoch in range(cfg.epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        wins = []
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            chosen, rejected = _pair_scores(model, [train_ids[i] for i in rows], tokenizer.pad_token_id, bf16)
            margin = torch.tensor([train[i].margin for i in rows], device=chosen.device) if cfg.margin else None
            loss = bradley_terry_loss(chosen, rejected, margin=margin, center_coef=cfg.center_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            wins.append(float(pairwise_accuracy(chosen.detach(), rejected.detach())) * len(rows))
            step = start // cfg.batch_size + 1
            if step % 10 == 0:
                log(f"reward model: epoch {epoch + 1} batch {step}/{-(-len(order) // cfg.batch_size)} loss {float(loss.detach()):.3f}")
        accuracy = sum(wins) / len(order)
        held_accuracy = evaluate_pairs(model, held_ids, tokenizer.pad_token_id, bf16) if held else float("nan")
        log(f"reward model: epoch {epoch + 1}: train accuracy {accuracy:.3f}, held-out accuracy {held_accuracy:.3f} ({len(held)} pairs)")
    model.eval()
    save_checkpoint(model, tokenizer, out_dir, extra={"train_pairs": len(train), "eval_pairs": len(held), "eval_accuracy": held_accuracy})
    report = RewardModelReport(Path(out_dir), len(train), len(held), held_accuracy, accuracy, time.perf_counter() - began)
    (Path(out_dir) / "report.json").write_text(json.dumps({**vars(report), "folder": str(report.folder)}, indent=2, allow_nan=True) + "\n")
    return report


def _pair_scores(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected scores ``(B,)``, both from one forward over the 2B sequences."""
    both = scores(model, [c for c, _ in pairs] + [r for _, r in pairs], pad_id, bf16=bf16)
    return both[: len(pairs)], both[len(pairs) :]


@torch.no_grad()
def evaluate_pairs(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, bf16: bool, batch_size: int = 16) -> float:
    """Pairwise accuracy of ``model`` on encoded ``(chosen, rejected)`` pairs."""
    model.eval()
    wins = 0.0
    for i in range(0, len(pairs), batch_size):
        chosen, rejected = _pair_scores(model, pairs[i : i + batch_size], pad_id, bf16)
        wins += float(pairwise_accuracy(chosen, rejected)) * len(chosen)
    return wins / len(pairs)
