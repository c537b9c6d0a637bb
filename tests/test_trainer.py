"""End-to-end: real GRPO steps on a tiny model, through the same entry points users call."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hone.cli import main
from hone.config import load_config
from hone.trainer import train

pytestmark = pytest.mark.slow


def tiny_config(tiny_folder, tmp_path, *extra):
    return load_config(
        "recipes/quickstart.yaml",
        [
            f"model={tiny_folder}", f"output.dir={tmp_path}/run", "train.steps=2", "rollout.prompts_per_step=2",
            "rollout.group_size=4", "rollout.max_new_tokens=8", "task.eval_size=8", "eval.samples=2", "eval.pass_k=[1,2]",
            "eval.pass_k_size=4", "rewards.workers=1", "output.progress=false", "train.lr=1e-3", "rollout.engine=transformers", *extra,
        ],
    )


def test_grpo_steps_change_the_model_and_write_a_readable_run(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path, "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]")
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in row for row in rows)
    assert [row["step"] for row in rows if "eval/accuracy" in row] == [0, 2]
    train_rows = [row for row in rows if "reward/mean" in row]
    assert len(train_rows) == 2 and all(row["update/grad_norm"] > 0 for row in train_rows)
    assert "eval/pass@2" in rows[-1]
    assert (run_dir / "progress.png").stat().st_size > 1000
    assert (run_dir / "config.yaml").is_file()
    samples = [json.loads(line) for line in (run_dir / "samples" / "eval-step-2.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and {"id", "answer", "completion", "reward"} <= set(samples[0])
    before = AutoModelForCausalLM.from_pretrained(tiny_folder)
    after = AutoModelForCausalLM.from_pretrained(run_dir / "final")  # plain transformers loads the checkpoint
    moved = max((a - b).abs().max() for a, b in zip(after.parameters(), before.parameters()))
    assert moved > 0


def test_lora_with_kl_uses_the_base_model_as_reference_and_saves_an_adapter(tiny_folder, tmp_path):
    cfg = tiny_config(
        tiny_folder, tmp_path, "train.lora.enabled=true", "algorithm.kl_coef=0.1", "eval.samples=0", "eval.pass_k=[1]",
        "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]",
    )
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("update/kl" in row for row in rows)
    assert (run_dir / "final" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_folder).parameters())


@pytest.mark.parametrize("lora", [False, True])
def test_compiled_layers_train_the_policy_and_the_reference_with_kl(tiny_folder, tmp_path, lora):
    """``train.compile``: the policy's layers (LoRA-wrapped too) and a frozen reference's are compiled; steps with a KL
    term run; evaluation generates with the eager layers."""
    from hone.trainer import loop, setup

    cfg = tiny_config(tiny_folder, tmp_path, "train.compile=true", "algorithm.kl_coef=0.1", f"train.lora.enabled={str(lora).lower()}",
                      "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]")
    run = setup(cfg)
    assert len(run.learner.policy.hone_compiled_blocks) == 2
    assert run.learner.adapter_reference if lora else len(run.learner.reference.hone_compiled_blocks) == 2
    loop(run)
    rows = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "update/grad_norm" in r]
    assert len(steps) == 2 and all(r["update/grad_norm"] > 0 and r["kl/sequence"] is not None for r in steps)
    assert 0.0 <= rows[-1]["eval/accuracy"] <= 1.0


def test_a_raising_reward_is_masked_and_counted(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path, "train.steps=1", "eval.at_start=false", "eval.samples=0", "eval.pass_k=[1]",
                      "rewards.functions=[{name: 'tests.reward_fixtures:sometimes_raises'}]")
    run_dir = train(cfg)
    row = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][0]
    assert row["reward/unscored"] == row["batch/samples_masked"] > 0
    assert row["batch/samples"] + row["batch/samples_masked"] == 8


def test_quickstart_recipe_runs_two_steps_on_the_embedded_model(tmp_path, capsys):
    code = main(["train", "recipes/quickstart.yaml", "train.steps=2", "task.eval_size=16", "rollout.prompts_per_step=2",
                 f"output.dir={tmp_path}/qs", "output.progress=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "eval @ step 0: accuracy" in out and "eval @ step 2: accuracy" in out
    rows = [json.loads(line) for line in (tmp_path / "qs" / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= rows[-1]["eval/accuracy"] <= 1.0 and rows[-1]["eval/unscored"] == 0
    assert torch.isfinite(torch.tensor([r["update/loss"] for r in rows if "update/loss" in r])).all()


def test_learner_weights_merge_lora_under_plain_names(tiny):
    import copy
    from types import SimpleNamespace

    from hone.config import LoraConfig
    from hone.learner.learner import Learner, with_lora

    plain_names = set(tiny.state_dict())
    lora = with_lora(copy.deepcopy(tiny), LoraConfig(enabled=True, r=4, alpha=8))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # a non-trivial adapter
    weights = dict(Learner.weights(SimpleNamespace(policy=lora)))
    assert set(weights) == plain_names
    merged = copy.deepcopy(lora).merge_and_unload()
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(weights[name], tensor)
    assert any("lora_A" in n for n, _ in lora.named_parameters())  # the training model keeps its adapters
    moved = max((weights[n] - t).abs().max() for n, t in tiny.state_dict().items())
    assert moved > 0


def test_a_mixture_logs_every_task_and_a_time_limit_ends_the_run_with_its_evaluation(tiny_folder, tmp_path):
    mixture = "[{name: arithmetic, digits: 1, eval_size: 3, label: one}, {name: arithmetic, digits: 2, eval_size: 4, label: two, levels: [2, 3]}]"
    cfg = tiny_config(tiny_folder, tmp_path, "task.name=mixture", f"task.mixture={mixture}", "task.curriculum.name=learnability",
                      "rewards.functions=[{name: verify}]", "eval.reward=verify", "eval.samples=0", "eval.pass_k=[1]",
                      "train.steps=50", "train.time_limit_s=0.001")
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "eval/accuracy" in row] == [0, 1]  # out of time after step 1: evaluated there
    assert {"eval/task/one/accuracy", "eval/task/two/accuracy", "eval/task_mean_accuracy"} <= set(rows[-1])
    step = next(row for row in rows if "reward/mean" in row)
    assert step["task/one/weight"] + step["task/two/weight"] == pytest.approx(1.0)
    assert step["task/one/groups"] + step["task/two/groups"] == 2 and 0 <= step["rollout/zero_variance"] <= 1
    assert (run_dir / "curriculum.png").stat().st_size > 1000 and (run_dir / "final").is_dir()
