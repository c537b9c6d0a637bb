"""End-to-end PPO against a reward model on tiny models, through the same entry points users call."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hone.cli import main
from hone.config import load_config
from hone.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rm_folder(tiny_folder, tmp_path_factory):
    """An untrained scalar head on the tiny backbone, saved as a reward-model folder."""
    from hone.rlhf.reward_model import load_reward_model

    model, tokenizer = load_reward_model(str(tiny_folder), base=True)
    folder = tmp_path_factory.mktemp("rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ppo_config(tiny_folder, rm_folder, tmp_path, *extra):
    return load_config("recipes/rlhf_sentiment.yaml", [
        f"model={tiny_folder}", f"rewards.model={rm_folder}", f"critic.init={rm_folder}", f"output.dir={tmp_path}/run",
        "train.steps=2", "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8", "task.eval_size=4",
        "eval.samples=2", "eval.pass_k_size=2", "eval.max_new_tokens=8", "rewards.workers=0", "output.progress=false",
        "train.lr=1e-3", "rollout.engine=transformers", "critic.warmup_steps=0", *extra,
    ])


@pytest.mark.parametrize("kind", ["shared", "separate"])
def test_ppo_steps_train_policy_and_critic_against_the_reward_model(tiny_folder, rm_folder, tmp_path, kind):
    cfg = ppo_config(tiny_folder, rm_folder, tmp_path, f"critic.kind={kind}", "algorithm.kl_target=1.0")
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "update/value_loss" in r]
    assert len(steps) == 2
    for row in steps:
        assert row["update/grad_norm"] > 0 and row["update/value_grad_norm"] > 0
        assert row["reward/reward_model"] is not None and row["reward/vader_sentiment"] is not None
        assert row["kl/sequence"] is not None  # the KL to the reference is measured every step
    assert steps[1]["kl/coef"] != steps[0]["kl/coef"]  # the adaptive controller moved it
    evals = [r for r in rows if "eval/sampled_reward/reward_model" in r]
    assert [r["step"] for r in evals] == [0, 2]
    before = AutoModelForCausalLM.from_pretrained(tiny_folder)
    after = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert max((a - b).abs().max() for a, b in zip(after.parameters(), before.parameters())) > 0
    assert (run_dir / "final" / "critic" / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["shared", "separate"])
def test_critic_warmup_leaves_the_policy_alone(tiny_folder, rm_folder, tmp_path, kind):
    """Only the critic learns in warm-up; for the shared head that means no value gradient into the policy's body."""
    cfg = ppo_config(tiny_folder, rm_folder, tmp_path, f"critic.kind={kind}", "critic.warmup_steps=5", "train.steps=1",
                     "eval.at_start=false", "eval.every=0", "algorithm.kl_coef=0.05")
    run_dir = train(cfg)
    before = AutoModelForCausalLM.from_pretrained(tiny_folder)
    after = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert all(torch.equal(a, b) for a, b in zip(after.parameters(), before.parameters()))
    if kind == "shared":  # while the zero-initialised head did learn
        from safetensors.torch import load_file

        assert load_file(run_dir / "final" / "critic" / "model.safetensors")["head.weight"].abs().max() > 0


def test_rlhf_command_labels_trains_a_reward_model_then_runs_ppo(tiny_folder, tmp_path, capsys):
    code = main(["rlhf", "recipes/rlhf_sentiment.yaml", f"model={tiny_folder}", "name=tinyrlhf", f"output.dir={tmp_path}/run",
                 f"reward_model.output={tmp_path}/rm", f"critic.init={tmp_path}/rm", "reward_model.simulate.pairs=12",
                 "reward_model.simulate.max_new_tokens=6", "reward_model.epochs=1", "train.steps=1", "rollout.prompts_per_step=2",
                 "rollout.max_new_tokens=6", "task.eval_size=2", "eval.samples=0", "eval.max_new_tokens=6", "rewards.workers=0",
                 "output.progress=false", "rollout.engine=transformers"])
    assert code == 0
    report = json.loads((tmp_path / "rm-preferences.report.json").read_text())
    assert report["pairs"] == 12 and 0.5 <= report["noise_ceiling"] <= 1.0
    assert json.loads((tmp_path / "rm" / "report.json").read_text())["eval_pairs"] == 2
    assert (tmp_path / "run" / "proxy_vs_gold.png").stat().st_size > 1000
