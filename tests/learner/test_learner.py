"""The Learner's own bookkeeping: the non-finite guard that stops a run, the CLI's answer to it, and the optimizer
state it makes up front (``hone.runtime.allocate_state``)."""

import copy

import pytest

from hone.config import load_config
from hone.learner.learner import Learner, TrainingStopped
from tests.conftest import TOKENIZER
from tests.learner.test_update import make_batch


def poisoned(model):
    batch = make_batch(model)
    batch.advantages[0, 0] = float("nan")
    return batch


def test_updates_non_finite_n_times_in_a_row_stop_the_run_with_one_line(tiny, tokenizer):
    cfg = load_config("recipes/quickstart.yaml", [f"model={TOKENIZER}", "train.nonfinite_limit=2", "train.bf16=false"])
    model = copy.deepcopy(tiny).train()
    learner = Learner(cfg, model, pad_id=tokenizer.pad_token_id)
    assert learner.update(poisoned(model))["skipped_nonfinite"] == 1.0
    assert learner.update(make_batch(model))["skipped_nonfinite"] == 0.0  # a clean update resets the count
    assert learner.update(poisoned(model))["skipped_nonfinite"] == 1.0
    with pytest.raises(TrainingStopped, match=r"^2 updates in a row had a non-finite loss or gradient .*train.nonfinite_limit=2"):
        learner.update(poisoned(model))


def test_the_cli_reports_a_stopped_run_in_one_line_with_exit_code_3(monkeypatch, capsys):
    import hone.trainer
    from hone.cli import main

    def stops(cfg):
        raise TrainingStopped("3 updates in a row had a non-finite loss")

    monkeypatch.setattr(hone.trainer, "train", stops)
    assert main(["train", "recipes/quickstart.yaml"]) == 3
    assert capsys.readouterr().err == "hone: stopped: 3 updates in a row had a non-finite loss\n"


def test_warmup_counts_training_steps_and_stands_still_while_only_the_critic_learns(tiny, tokenizer):
    """Four optimizer steps per training step (2 epochs x 2 mini-batches): the learning rate still rises by a
    quarter per training step, and not at all during a step in which the policy does not learn."""
    cfg = load_config("recipes/quickstart.yaml", [f"model={TOKENIZER}", "train.warmup_steps=4", "train.lr=1e-3", "train.bf16=false",
                                                  "algorithm.ppo_epochs=2", "algorithm.mini_batches=2"])
    model = copy.deepcopy(tiny).train()
    learner = Learner(cfg, model, pad_id=tokenizer.pad_token_id)
    lrs = [learner.update(make_batch(model))["lr"]]
    learner.train_policy = False  # as critic warm-up sets it
    lrs.append(learner.update(make_batch(model))["lr"])
    learner.train_policy = True
    lrs += [learner.update(make_batch(model))["lr"] for _ in range(4)]
    assert lrs == pytest.approx([0.25e-3, 0.5e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3])


def test_a_learner_has_its_optimizer_state_before_its_first_update(tiny, tokenizer):
    cfg = load_config("recipes/quickstart.yaml", [f"model={TOKENIZER}", "train.bf16=false"])
    model = copy.deepcopy(tiny).train()
    learner = Learner(cfg, model, pad_id=tokenizer.pad_token_id)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(float(learner.optimizer.state[p]["step"]) == 0.0 for p in trainable)
    assert all(p.grad is None for p in trainable)
