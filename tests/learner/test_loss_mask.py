"""Trajectories with a loss mask: single-turn trains exactly as before trajectories existed, and the
environment's tokens of a multi-turn trajectory are seen by the model but never trained on."""

import copy
from pathlib import Path
from types import SimpleNamespace

import torch

from hone.data.records import Problem, Trajectory, Turn
from hone.learner.batch import collate
from hone.learner.forward import completion_logprobs, policy_forward
from hone.learner.update import policy_update

PROBLEM = Problem("p", ({"role": "user", "content": "x"},), "0")
GOLDEN = Path(__file__).parent / "fixtures" / "single_turn_golden.pt"
ALGO = SimpleNamespace(policy_loss="ppo_clip", loss_agg="token-mean", clip_low=0.2, clip_high=0.28, dual_clip=None, tis_cap=None,
                       kl_coef=0.05, kl_in_reward=False, kl_estimator="k3", entropy_coef=0.0, ppo_epochs=1, mini_batches=1)
TRAIN = SimpleNamespace(micro_batch_size=5, micro_batch_tokens=None, bf16=False, max_grad_norm=1e9, skip_zero_advantage=True)


def grads(model, batch, algo=ALGO):
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the gradients alone
    stats = policy_update(model, optimizer, batch, algo, TRAIN, norm_len=8.0)
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, stats


def test_single_turn_trains_exactly_as_before_trajectories(tiny):
    """The numbers in the fixture came from the update before trajectories and loss masks existed
    (fixtures/make_single_turn_golden.py.txt, run at commit a60a672): the same rows as single-turn
    trajectories give the same log-probs, loss and gradients."""
    golden = torch.load(GOLDEN)
    trajectories = [Trajectory.single_turn(PROBLEM, p, c, "", [0.0] * len(c), "stop") for p, c in zip(golden["prompts"], golden["completions"])]
    batch = collate(trajectories, pad_id=0)
    batch.sampling_logprobs = golden["sampling_logprobs"]
    batch.advantages = golden["advantages"][:, None] * batch.completion_mask
    batch.ref_logprobs = batch.sampling_logprobs - 0.1
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(tiny, batch)[0], golden["logprobs"], atol=1e-6, rtol=1e-5)
    got, stats = grads(tiny, batch)
    assert abs(stats["loss"] - golden["loss"]) < 1e-6
    assert set(got) == set(golden["grad_norms"])
    for name, norm in golden["grad_norms"].items():
        assert abs(float(got[name].norm()) - norm) <= 1e-5 * max(1.0, norm), name
    for name, grad in golden["small_grads"].items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-4)


def multi_turn(prompt, model_a, tool, model_b):
    """A trajectory: the model's turn, a tool reply, the model's second turn."""
    ids = model_a + tool + model_b
    mask = [1] * len(model_a) + [0] * len(tool) + [1] * len(model_b)
    a, b = len(model_a), len(model_a) + len(tool)
    turns = [Turn("assistant", 0, a, "a"), Turn("tool", a, b, "t"), Turn("assistant", b, len(ids), "b")]
    return Trajectory(PROBLEM, prompt, ids, mask, [-1.0 if m else 0.0 for m in mask], turns, "stop")


def test_environment_tokens_are_seen_but_not_trained_on(tiny):
    prompt, model_a, tool, model_b = [11, 12, 13], [21, 22], [31, 32, 33], [41, 42, 43]
    trajectory = multi_turn(prompt, model_a, tool, model_b)
    batch = collate([trajectory], pad_id=0)
    assert batch.completion_mask.tolist() == [[1, 1, 0, 0, 0, 1, 1, 1]]
    assert batch.attention_mask.tolist() == [[1] * 11]  # the model reads the tool's tokens
    assert batch.sampling_logprobs[0, 2:5].tolist() == [0.0, 0.0, 0.0]
    with torch.no_grad():
        logprobs = policy_forward(tiny, batch).logprobs
        # the plain forward of the whole sequence: log-prob of token t given everything before it
        ids = torch.tensor([prompt + model_a + tool + model_b])
        full = torch.log_softmax(tiny(input_ids=ids).logits.float(), -1)[0, len(prompt) - 1 : -1]
        expected = full.gather(-1, ids[0, len(prompt):, None])[:, 0] * batch.completion_mask[0]
    torch.testing.assert_close(logprobs[0], expected, atol=1e-5, rtol=1e-5)
    assert logprobs[0, 2:5].tolist() == [0.0, 0.0, 0.0]


def test_the_loss_ignores_what_the_environment_said_next_to_it(tiny):
    """Two trajectories that differ only in the *last* environment turn's tokens, after which the model
    says nothing more, have the same gradient: no loss term reads a masked token as a target."""
    prompt = [11, 12, 13]
    first = multi_turn(prompt, [21, 22], [31, 32], [41])
    second = multi_turn(prompt, [21, 22], [31, 32], [41])
    for t in (first, second):  # drop the final model turn: the trajectory ends on the tool's reply
        t.completion_ids, t.loss_mask, t.logprobs, t.turns = t.completion_ids[:4], t.loss_mask[:4], t.logprobs[:4], t.turns[:2]
    second.completion_ids = second.completion_ids[:2] + [77, 78]
    results = []
    for t in (first, second):
        batch = collate([t], pad_id=0)
        batch.advantages = batch.completion_mask.clone()
        with torch.no_grad():
            batch.sampling_logprobs = policy_forward(tiny, batch).logprobs
        results.append(grads(tiny, batch, SimpleNamespace(**{**vars(ALGO), "kl_coef": 0.0})))
    (g1, s1), (g2, s2) = results
    assert s1["loss"] == s2["loss"]
    assert set(g1) == set(g2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-7, rtol=0)
