"""The learner: the policy and its optimizer, the learning-rate schedule, the reference model, the critic
and the KL coefficient.

It turns scored groups into a training batch (:meth:`Learner.make_batch`), updates the policy on it
(:meth:`Learner.update`), hands the new weights to whoever generates (:meth:`Learner.weights`), and
saves and restores everything an exact resume needs (:meth:`Learner.state_dict`). It imports no
generation code, so the rollout side can live in another process (a Ray actor) and receive weights.

What it loads follows from what the algorithm declares (``hone.algorithms.variants``): a critic
only for variants whose advantage estimator reads one, a reference model only for ``kl_coef > 0``
(with LoRA, the reference is the base model with the adapter switched off: no second copy).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch

from hone.algorithms import ADVANTAGE_ESTIMATORS
from hone.data.records import ScoredGroup, TrainBatch
from hone.learner.batch import BatchStats, build_batch
from hone.learner.critic import load_critic
from hone.learner.forward import logprobs_no_grad, values_no_grad
from hone.learner.update import policy_update
from hone.models import load_model
from hone.runtime import allocate_state, compile_layers


class TrainingStopped(RuntimeError):
    """The run cannot go on (for example, updates keep going non-finite); the message says why in one line."""


class Learner:
    def __init__(self, cfg, policy, *, reference=None, adapter_reference: bool = False, critic=None, pad_id: int):
        self.cfg = cfg  # the run's Config; cfg.algorithm.kl_coef is the starting value of self.kl_coef
        self.policy = policy
        self.reference = reference  # a frozen copy of the starting policy, or None
        self.adapter_reference = adapter_reference  # LoRA: the reference is the policy with its adapter off
        self.critic = critic
        self.pad_id = pad_id
        self.kl_coef = cfg.algorithm.kl_coef  # an adaptive controller (a hook) may move it
        self.train_policy = True  # False while only the critic learns (critic warm-up, a hook)
        self.version = 0  # updates applied: the weight version the rollout side generates with
        self.policy_steps = 0  # training steps in which the policy learned: its learning-rate schedule's clock
        self.critic_steps = 0
        self.nonfinite_in_a_row = 0
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.train.lr}]
        if critic is not None:  # the critic is the optimizer's second parameter group
            groups.append({"params": list(critic.parameters()), "lr": cfg.critic.learning_rate})
        train = cfg.train
        self.optimizer = torch.optim.AdamW(groups, lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay,
                                           fused=True)  # one kernel over all parameters: 55 against 137 ms a step for 135M on 2 cores
        allocate_state(self.optimizer)  # now, not at the first step: hone.runtime
        self.seconds = {"reference": 0.0, "policy": 0.0, "values": 0.0}

    @classmethod
    def from_config(cls, cfg, device, pad_id: int) -> "Learner":
        policy = load_model(cfg.model)
        reference, adapter_reference = None, False
        if cfg.train.lora.enabled:
            policy = with_lora(policy, cfg.train.lora)
            adapter_reference = cfg.algorithm.kl_coef > 0
        elif cfg.algorithm.kl_coef > 0:  # a KL coefficient of 0 never loads or runs a reference model
            reference = load_model(cfg.model).eval().requires_grad_(False).to(device)
        policy.to(device).train()
        for model in [policy, reference] if cfg.train.compile else []:
            if model is not None:
                compile_layers(model)
        critic = None
        if ADVANTAGE_ESTIMATORS.get(cfg.algorithm.advantage).needs_critic:
            critic = load_critic(cfg.critic.kind, cfg.named(cfg.critic.init or cfg.model), policy.config.hidden_size).to(device).train()
        return cls(cfg, policy, reference=reference, adapter_reference=adapter_reference, critic=critic, pad_id=pad_id)

    # --- one training step -------------------------------------------------------------------------

    def make_batch(self, groups: list[ScoredGroup]) -> tuple[TrainBatch | None, BatchStats]:
        """Scored groups -> a batch with advantages (reference, behaviour and critic forwards as the algorithm needs)."""
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        algo = replace(self.cfg.algorithm, kl_coef=self.kl_coef)
        return build_batch(groups, algo, self.cfg.rollout.max_new_tokens, self.pad_id, self)

    def update(self, batch: TrainBatch | None) -> dict[str, float]:
        """One training step's update on ``batch`` (nothing to learn from: None); returns its statistics.

        The learning rate follows the schedule of training steps, not optimizer steps (PPO epochs and
        mini-batches take several per training step), and the policy's clock stands still while only the
        critic learns. Updates skipped for a non-finite loss or gradient are counted; ``train.nonfinite_limit``
        of them in a row stop the run.
        """
        cfg = self.cfg
        warmup = max(1, cfg.train.warmup_steps)
        self.optimizer.param_groups[0]["lr"] = cfg.train.lr * min(1.0, (self.policy_steps + 1) / warmup)
        if self.critic is not None:
            self.optimizer.param_groups[1]["lr"] = cfg.critic.learning_rate * min(1.0, (self.critic_steps + 1) / warmup)
        stats: dict[str, float] = {}
        if batch is not None:
            algo = replace(cfg.algorithm, kl_coef=self.kl_coef)
            stats = policy_update(self.policy, self.optimizer, batch, algo, cfg.train, cfg.rollout.max_new_tokens, self.critic,
                                  policy_weight=1.0 if self.train_policy else 0.0)
            self.policy_steps += self.train_policy
            self.critic_steps += self.critic is not None
        skipped = stats.get("skipped_nonfinite", 0.0) > 0
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if skipped else 0
        if self.nonfinite_in_a_row >= cfg.train.nonfinite_limit:
            raise TrainingStopped(f"{self.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient and were skipped "
                                  f"(train.nonfinite_limit={cfg.train.nonfinite_limit}); try a lower train.lr or look at the rewards")
        self.version += 1
        return {**stats, "lr": self.optimizer.param_groups[0]["lr"]}

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The policy's weights under Hugging Face checkpoint names, LoRA adapters merged in; lazy, so a
        rollout side that shares the policy's memory costs nothing by not reading them."""
        model = self.policy
        if not hasattr(model, "merge_adapter"):
            yield from model.state_dict().items()
            return
        model.merge_adapter()
        try:
            state = model.get_base_model().state_dict()
            yield from [(name.replace(".base_layer", ""), t.clone()) for name, t in state.items() if "lora_" not in name]
        finally:
            model.unmerge_adapter()

    # --- the forwards a batch needs (hone.learner.batch.BatchModels), timed ----------------------------

    def reference_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        model, context = (self.policy, self.policy.disable_adapter()) if self.adapter_reference else (self.reference, nullcontext())
        with context:
            return self._timed("reference", lambda: logprobs_no_grad(model, batch, *self._micro))

    def policy_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        return self._timed("policy", lambda: logprobs_no_grad(self.policy, batch, *self._micro))

    def values(self, batch: TrainBatch) -> torch.Tensor:
        return self._timed("values", lambda: values_no_grad(self.critic, self.policy, batch, *self._micro))

    @property
    def _micro(self) -> tuple[int, bool, int | None]:
        """The no-grad forwards' ``(micro_batch_size, bf16, micro_batch_tokens)``."""
        train = self.cfg.train
        return train.micro_batch_size, train.bf16, train.micro_batch_tokens

    def _timed(self, name: str, fn):
        began = time.perf_counter()
        out = fn()
        self.seconds[name] += time.perf_counter() - began
        return out

    # --- exact resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything but the model weights (those are the checkpoint's Hugging Face folders)."""
        return {"optimizer": self.optimizer.state_dict(), "kl_coef": self.kl_coef, "train_policy": self.train_policy,
                "version": self.version, "policy_steps": self.policy_steps, "critic_steps": self.critic_steps,
                "nonfinite_in_a_row": self.nonfinite_in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        for name in ("kl_coef", "train_policy", "version", "policy_steps", "critic_steps", "nonfinite_in_a_row"):
            setattr(self, name, state[name])

    def load_weights(self, folder: Path) -> None:
        """The policy's (and critic's) weights from a checkpoint folder that ``hone.watch.checkpoint`` wrote."""
        from hone.watch.checkpoint import read_weights

        folder = Path(folder)
        if hasattr(self.policy, "merge_adapter"):
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(self.policy, load_peft_weights(str(folder / "adapter")))
        else:
            _load_into(self.policy, read_weights(folder))
        if self.critic is not None:
            critic = self.critic.model if hasattr(self.critic, "model") else self.critic
            _load_into(critic, read_weights(folder / "critic"))


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model``; a key missing from the file is allowed only for a tied output embedding."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = [k for k in missing if k.endswith("lm_head.weight") and getattr(getattr(model, "config", None), "tie_word_embeddings", False)]
    if unexpected or set(missing) - set(tied):
        raise ValueError(f"checkpoint does not fit the model: missing {sorted(set(missing) - set(tied))[:3]}, unexpected {unexpected[:3]}")


def with_lora(model, lora):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)
