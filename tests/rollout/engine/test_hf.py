import math
from dataclasses import replace

import torch

from hone.learner.batch import collate
from hone.rollout.engine import SamplingParams
from hone.data.padding import left_pad, positions
from hone.rollout.engine.hf import HFEngine, sampling_logprobs
from hone.data.records import Problem, Trajectory
from hone.learner.forward import completion_logprobs
from tests.conftest import TOKENIZER

PROMPTS = [[1, 9690, 198, 2683], [1, 4093, 28, 3400, 17, 5, 12]]


def test_left_pad_and_positions():
    ids, mask = left_pad([[5, 6], [7, 8, 9]], pad_id=0)
    assert ids.tolist() == [[0, 5, 6], [7, 8, 9]]
    assert mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert positions(mask).tolist() == [[0, 0, 1], [0, 1, 2]]


def test_top_p_keeps_the_nucleus_and_renormalises():
    # probabilities 0.5, 0.3, 0.2: top_p 0.7 keeps {0.5, 0.3} (mass before the 0.2 token is 0.8 >= 0.7)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    probs = sampling_logprobs(logits, temperature=1.0, top_p=0.7).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0]]))


def test_greedy_matches_transformers_generate(tiny, tokenizer):
    engine = HFEngine(tiny, tokenizer)
    ours = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=0.0))
    for prompt, (gen,) in zip(PROMPTS, ours):
        ref = tiny.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = ref[0, len(prompt):].tolist()
        assert gen.completion_ids == expected[: len(gen.completion_ids)]
        assert gen.finish_reason in {"stop", "length"}
        assert len(gen.logprobs) == len(gen.completion_ids)


def test_sampling_logprobs_agree_with_the_trainers_forward(tiny, tokenizer):
    """The engine's per-token log-probs and the trainer's recomputation see the same distribution."""
    engine = HFEngine(tiny, tokenizer)
    groups = engine.generate(PROMPTS, SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=1))
    assert [len(g) for g in groups] == [3, 3]
    problem = Problem("p", ({"role": "user", "content": "x"},), "0")
    rollouts = [Trajectory.single_turn(problem, g.prompt_ids, g.completion_ids, g.text, g.logprobs, g.finish_reason) for gs in groups for g in gs]
    batch = collate(rollouts, tokenizer.pad_token_id)
    logprobs, _ = completion_logprobs(tiny, batch)
    gap = ((logprobs - batch.sampling_logprobs).abs() * batch.completion_mask).max()
    assert gap < 1e-4, f"engine and trainer disagree by {gap}"


def test_seeded_sampling_is_reproducible_and_eos_is_kept(tiny, tokenizer):
    engine = HFEngine(tiny, tokenizer, batch_size=2)  # several generation batches
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=3)
    first, second = engine.generate(PROMPTS, params), engine.generate(PROMPTS, params)
    assert [[g.completion_ids for g in gs] for gs in first] == [[g.completion_ids for g in gs] for gs in second]
    for gs in first:
        for g in gs:
            if g.finish_reason == "stop":
                assert g.completion_ids[-1] in engine.eos_ids
            else:
                assert len(g.completion_ids) == 6
            assert all(lp <= 0 and math.isfinite(lp) for lp in g.logprobs)


def test_a_separate_engine_copy_takes_pushed_weights(tiny, tokenizer):
    from hone.models import tiny_model

    copy = tiny_model(TOKENIZER, hidden_size=64, num_layers=2, seed=123).eval()
    engine = HFEngine(copy, tokenizer, shared=False)
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    engine.load_weights(tiny.state_dict().items())
    assert engine.generate(PROMPTS, params)[0][0].completion_ids == HFEngine(tiny, tokenizer).generate(PROMPTS, params)[0][0].completion_ids


def test_min_new_tokens_holds_back_the_end_of_sequence(tiny, tokenizer):
    engine = HFEngine(tiny, tokenizer)
    eos = engine.eos_ids[0]

    def eos_likely(module, args, out):  # the end-of-sequence token almost certain at every step
        out.logits[..., eos] += 50.0
        return out

    handle = tiny.register_forward_hook(eos_likely)
    try:
        early = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=0))
        held = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=0, min_new_tokens=4))
    finally:
        handle.remove()
    assert all(g.completion_ids == [eos] for gs in early for g in gs)
    for g in (g for gs in held for g in gs):
        assert eos not in g.completion_ids[:4] and g.completion_ids[4:] == [eos] and g.finish_reason == "stop"
        assert all(math.isfinite(lp) for lp in g.logprobs)  # log-probs of the distribution sampled from


class StopsNothing:
    every = 3

    def __init__(self):
        self.seen: list[list[int]] = []

    def __call__(self, partials):
        self.seen.append([len(p.completion_ids) for p in partials])
        return []


def test_a_callback_that_stops_nothing_changes_nothing(tiny, tokenizer):
    engine = HFEngine(tiny, tokenizer, batch_size=4)  # two generation batches: indices continue across them
    params = SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=5)
    callback = StopsNothing()
    plain, watched = engine.generate(PROMPTS, params), engine.generate(PROMPTS, params, callback=callback)
    assert [[(g.completion_ids, g.logprobs, g.finish_reason) for g in gs] for gs in plain] == \
        [[(g.completion_ids, g.logprobs, g.finish_reason) for g in gs] for gs in watched]
    assert callback.seen and all(set(lengths) <= {3, 6, 9} for lengths in callback.seen)  # called every 3 tokens


def test_a_callback_stops_the_sequences_it_names(tiny, tokenizer):
    engine = HFEngine(tiny, tokenizer)
    params = SamplingParams(max_new_tokens=10, temperature=1.0, n=2, seed=5)
    plain = [g for gs in engine.generate(PROMPTS, params) for g in gs]

    class StopOdd:
        every = 4

        def __call__(self, partials):
            return [p.index for p in partials if p.index % 2 == 1]

    watched = [g for gs in engine.generate(PROMPTS, params, callback=StopOdd()) for g in gs]
    for index, (a, b) in enumerate(zip(plain, watched)):
        if index % 2 == 0 or len(a.completion_ids) <= 4:  # untouched, or ended before the first call
            assert (b.completion_ids, b.finish_reason) == (a.completion_ids, a.finish_reason)
        else:
            assert b.finish_reason == "stopped" and b.completion_ids == a.completion_ids[:4] and len(b.logprobs) == 4


def test_a_callback_naming_an_unknown_sequence_is_an_error(tiny, tokenizer):
    import pytest

    class Wrong:
        every = 2

        def __call__(self, partials):
            return [99]

    with pytest.raises(ValueError, match=r"indices \[99\]"):
        HFEngine(tiny, tokenizer).generate(PROMPTS, SamplingParams(max_new_tokens=6, seed=0), callback=Wrong())


def test_a_stop_string_ends_the_completion_and_its_text(tiny, tokenizer):
    """Greedy decoding, then again with a stop string taken from the middle of the first answer."""
    engine = HFEngine(tiny, tokenizer)
    free = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=12, temperature=0.0))[0][0]
    ids = free.completion_ids
    cut = next(k for k in range(3, len(ids)) if tokenizer.decode(ids[:k]).strip())  # a stretch of visible text
    text_k = tokenizer.decode(ids[:cut], skip_special_tokens=True)
    stop = text_k[-2:]
    first_end = next(k for k in range(1, len(ids) + 1) if stop in tokenizer.decode(ids[:k], skip_special_tokens=True))
    stopped = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=12, temperature=0.0, stop=(stop,)))[0][0]
    assert stopped.completion_ids == ids[:first_end] and stopped.finish_reason == "stop"
    assert stopped.text.endswith(stop) and stopped.text.count(stop) == 1
    assert len(stopped.logprobs) == first_end


def test_a_prompts_samples_do_not_depend_on_the_other_prompts_in_its_call(tiny, tokenizer):
    """Seeds are per prompt (and sample), so a step split across rollout workers draws what one call draws."""
    engine = HFEngine(tiny, tokenizer, batch_size=3)
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=11)
    whole = engine.generate(PROMPTS, params)
    alone = engine.generate(PROMPTS[1:], replace(params, seed=None, seeds=(params.prompt_seed(1),)))
    assert [g.completion_ids for g in alone[0]] == [g.completion_ids for g in whole[1]]
    assert [g.completion_ids for g in whole[1]] != [g.completion_ids for g in engine.generate(PROMPTS, replace(params, seed=12))[1]]
    assert whole[1][0].completion_ids != whole[1][1].completion_ids  # the two samples of one prompt draw apart


def test_sampled_tokens_follow_the_models_distribution(tokenizer):
    """The engine's draw (``hone.rollout.engine.sampling``, each row's number from its own generator): 2,048
    one-token samples of one prompt at temperature 0.1 against softmax(logits / 0.1) of the same model (the
    vLLM test's shape, whose logits spread over 39 likely tokens at 0.1; the ``tiny`` fixture's over 2)."""
    from hone.models import tiny_model
    from tests.rollout.engine.test_sampling import chi_square

    model = tiny_model(TOKENIZER, hidden_size=128, num_heads=2, seed=0).eval()
    with torch.no_grad():
        probs = (model(torch.tensor([PROMPTS[0]])).logits[0, -1].float() / 0.1).softmax(-1)
    groups = HFEngine(model, tokenizer, batch_size=512).generate([PROMPTS[0]], SamplingParams(max_new_tokens=1, temperature=0.1, n=2048, seed=0))
    counts = torch.bincount(torch.tensor([g.completion_ids[0] for g in groups[0]]), minlength=len(probs))
    stat, dof = chi_square(counts, probs)
    assert dof >= 10, dof  # enough tokens are likely for the test to say something
    assert stat < dof + 5 * (2 * dof) ** 0.5, (stat, dof)
