import pytest
import torch
from torch.testing import assert_close

from hone.learner.batch import collate
from hone.learner.critic import SeparateCritic, SharedCritic, load_critic
from hone.data.records import Problem, Trajectory
from hone.learner.forward import policy_forward, values_no_grad

PROBLEM = Problem("p", ({"role": "user", "content": "q"},), "")


def _batch():
    rollouts = [Trajectory.single_turn(PROBLEM, [1, 2, 3], [5, 6, 7], "x", [-1.0] * 3, "stop"), Trajectory.single_turn(PROBLEM, [4, 5], [8], "y", [-1.0], "stop")]
    return collate(rollouts, pad_id=0)


def test_shared_critic_starts_at_zero_and_reads_the_completion_positions(tiny):
    batch = _batch()
    critic = SharedCritic(tiny.config.hidden_size)
    hidden = policy_forward(tiny, batch, hidden=True).hidden
    assert hidden.shape == (2, 3, tiny.config.hidden_size)
    assert_close(critic.values(batch, hidden), torch.zeros(2, 3))
    torch.nn.init.ones_(critic.head.weight)
    values = critic.values(batch, hidden)
    # position t of the completion is read at the hidden state that predicts token t
    full = tiny(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states[-1]
    assert values[0, 0].item() == pytest.approx(full[0, 2].sum().item() + critic.head.bias.item(), abs=1e-4)
    assert values[1, 1:].abs().sum() == 0  # padding


def test_separate_critic_from_a_reward_model_folder_starts_from_its_head(tiny_folder, tmp_path):
    from hone.rlhf.reward_model import load_reward_model

    rm, tokenizer = load_reward_model(str(tiny_folder), base=True)
    torch.nn.init.constant_(rm.score.weight, 0.01)
    rm.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    critic = load_critic("separate", str(tmp_path / "rm"), hidden_size=0)
    assert isinstance(critic, SeparateCritic)
    assert_close(critic.model.score.weight, rm.score.weight)  # the value head is the reward model's head
    batch = _batch()
    values = values_no_grad(critic, None, batch, micro_batch_size=1, bf16=False)
    assert values.shape == (2, 3) and values[1, 1:].abs().sum() == 0
    assert_close(values, critic.values(batch), atol=1e-5, rtol=0)  # micro-batches change nothing
