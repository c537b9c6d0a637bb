"""PPO's critic: a value ``V(s_t)`` for every completion token, where ``s_t`` is the prompt plus the
completion's first ``t`` tokens, i.e. the position whose logits predict token ``t``.

Two kinds, picked by ``critic.kind``:

- ``separate``: its own transformer, a Hugging Face ``AutoModelForTokenClassification`` with one
  label (a scalar head on every position). It starts from ``critic.init``; a reward-model folder is
  the usual choice (InstructGPT, OpenRLHF), and its ``score`` head then loads into the critic's, so
  the first values are already the reward model's opinion. Costs a second model's forward and
  backward per update.
- ``shared``: a linear head on the policy's last hidden state (TRL's old ``ValueHead``). Nearly free,
  but the value loss also moves the policy's body, so ``algorithm.vf_coef`` matters.

Both meet the trainer through :class:`Critic`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from hone.data.padding import positions
from hone.data.records import TrainBatch
from hone.runtime import autocast, device_of


class Critic(Protocol):
    needs_hidden: bool  # True: values() reads the policy's last hidden state, passed by the caller

    def values(self, batch: TrainBatch, hidden: Tensor | None, *, bf16: bool) -> Tensor:
        """``(B, C)`` float32 values of the completion tokens, 0 on padding."""
        ...

    def parameters(self): ...

    def train(self, mode: bool = True): ...


class SeparateCritic(nn.Module):
    """A token-classification model with one label: its own backbone and a scalar head."""

    needs_hidden = False

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def values(self, batch: TrainBatch, hidden: Tensor | None = None, *, bf16: bool = False) -> Tensor:
        width = batch.completion_length
        with autocast(device_of(self.model), bf16):
            out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions(batch.attention_mask))
        return out.logits[:, -width - 1 : -1, 0].float() * batch.completion_mask


class SharedCritic(nn.Module):
    """A linear value head on the policy's last hidden state; zero-initialised, so V starts at 0."""

    needs_hidden = True

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def values(self, batch: TrainBatch, hidden: Tensor | None, *, bf16: bool = False) -> Tensor:
        if hidden is None:
            raise ValueError("a shared critic needs the policy's hidden states of the completion positions")
        return self.head(hidden.float()).squeeze(-1) * batch.completion_mask


def load_critic(kind: str, init: str, hidden_size: int) -> nn.Module:
    """The critic ``critic.kind`` names; ``init`` is the separate critic's starting model."""
    if kind == "shared":
        return SharedCritic(hidden_size)
    from transformers import AutoModelForTokenClassification

    from hone.models import ModelLoadError, local_folder

    try:
        model = AutoModelForTokenClassification.from_pretrained(local_folder(init), num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"critic.init {init!r}: cannot load as a value model ({str(exc).splitlines()[0]})") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return SeparateCritic(model)
