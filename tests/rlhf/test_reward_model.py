"""Reward model: training on preferences a tiny model can learn, and loading the saved folder with plain transformers."""

import logging
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hone.config import RewardModelConfig
from hone.data.records import PreferencePair, Problem
from hone.rlhf.reward_model import RewardModelScorer, load_reward_model, score_texts, train_reward_model
from hone.rewards import RewardComponent, RewardScorer

pytestmark = pytest.mark.slow


def _pairs(n, flip=False):
    # the preferred answer always says "great", the other "awful" (or the reverse): learnable from one token
    prompt = ({"role": "user", "content": "Review the film."},)
    good, bad = ("awful", "great") if flip else ("great", "awful")
    return [PreferencePair(prompt, f"It was {good} {i}.", f"It was {bad} {i}.") for i in range(n)]


def test_reward_model_learns_pairs_and_scores_the_same_after_loading(tiny_folder, tmp_path):
    from hone.rlhf.reward_model import encode, evaluate_pairs, split_pairs

    cfg = RewardModelConfig(base=str(tiny_folder), epochs=3, lr=3e-3, batch_size=8, eval_fraction=0.25, max_length=64)
    torch.manual_seed(0)  # the head train_reward_model starts from (it seeds the same way)
    start, tokenizer = load_reward_model(str(tiny_folder), base=True)
    _, held = split_pairs(_pairs(48), 0.25, seed=0)
    held_ids = [(encode(tokenizer, p.prompt, p.chosen, 64), encode(tokenizer, p.prompt, p.rejected, 64)) for p in held]
    before = evaluate_pairs(start, held_ids, tokenizer.pad_token_id, bf16=False)
    flip = before > 0.5  # teach the opposite of what the random head happens to prefer
    before = 1 - before if flip else before
    report = train_reward_model(_pairs(48, flip), cfg, tmp_path / "rm", seed=0, bf16=False, log=lambda *_: None)
    assert report.train_pairs == 36 and report.eval_pairs == 12
    # the random head ranks every pair the same way (they differ in one word); training must learn which word wins
    assert before < 0.5 and report.eval_accuracy == 1.0
    # plain transformers: the documented recipe scores exactly as hone does
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm"), AutoTokenizer.from_pretrained(tmp_path / "rm")
    prompt = [{"role": "user", "content": "Review the film."}]
    text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "It was great."}], tokenize=False)
    plain = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    hone_model, hone_tokenizer = load_reward_model(str(tmp_path / "rm"))
    ours = score_texts(hone_model, hone_tokenizer, [prompt, prompt], ["It was great.", "It was awful, truly awful."])
    assert ours[0] == pytest.approx(plain, abs=1e-5)  # left padding in a batch does not change the score
    assert (ours[0] > ours[1]) != flip


PROBLEM = Problem("p", ({"role": "user", "content": "hi"},), "")


def _trajectories(*texts):
    # stand-ins for hone.data.records.Trajectory: the scorer reads the problem's prompt and the final model turn
    return [SimpleNamespace(problem=PROBLEM, text=t, prompt_ids=[1], completion_ids=[2]) for t in texts]


def _length_scorer():
    return RewardScorer([RewardComponent("length", lambda c, r: [float(len(x)) for x in c], 0.0)], None)


def test_reward_model_scorer_adds_text_rewards_and_logs_both(tiny_folder):
    model, tokenizer = load_reward_model(str(tiny_folder), base=True)
    scorer = RewardModelScorer(model, tokenizer, 2.0, _length_scorer())
    result = scorer.score(_trajectories("abc", "de"))
    proxy = result.components["reward_model"]
    assert result.components["length"] == [3.0, 2.0]
    assert result.total == pytest.approx([2.0 * proxy[0], 2.0 * proxy[1]])  # the text reward has weight 0
    assert proxy == pytest.approx(score_texts(model, tokenizer, [PROBLEM.messages] * 2, ["abc", "de"]))
    assert result.faults == {"reward_model": 0, "length": 0}


def test_reward_model_that_raises_masks_its_batch_and_counts_it(tiny_folder, monkeypatch, caplog):
    model, tokenizer = load_reward_model(str(tiny_folder), base=True)
    forward, calls = model.forward, []

    def second_batch_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory\nallocator details")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", second_batch_fails)
    scorer = RewardModelScorer(model, tokenizer, 2.0, _length_scorer(), batch_size=1)  # one item per forward
    with caplog.at_level(logging.WARNING):
        result = scorer.score(_trajectories("abc", "de", "f"))
    proxy = result.components["reward_model"]
    assert proxy[1] is None and None not in (proxy[0], proxy[2])
    assert result.total[1] is None  # masked, not 0
    assert result.faults == {"reward_model": 1, "length": 0}
    assert result.components["length"] == [3.0, 2.0, 1.0]  # the other rewards are still scored
    assert "reward 'reward_model': 1/3 items could not be scored (first: raised RuntimeError: out of memory)" in caplog.text


def test_reward_model_non_finite_score_is_masked_and_counted(tiny_folder, monkeypatch, caplog):
    model, tokenizer = load_reward_model(str(tiny_folder), base=True)
    forward = model.forward

    def nan_for_second_item(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits[1] = float("nan")
        return out

    monkeypatch.setattr(model, "forward", nan_for_second_item)
    scorer = RewardModelScorer(model, tokenizer, 2.0, _length_scorer())
    with caplog.at_level(logging.WARNING):
        result = scorer.score(_trajectories("abc", "de", "f"))
    assert result.components["reward_model"][1] is None
    assert [t is None for t in result.total] == [False, True, False]
    assert result.faults == {"reward_model": 1, "length": 0}
    assert "reward 'reward_model': 1/3 items could not be scored (first: returned nan; expected a finite float or None)" in caplog.text
