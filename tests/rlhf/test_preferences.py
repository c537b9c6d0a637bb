import json

import pytest

from hone.rlhf.preferences import PreferenceDataError, label_pairs, load_preferences, parse_row
from hone.data.records import PreferencePair, Problem


def test_plain_row_with_string_prompt_and_margin():
    pair = parse_row({"prompt": "Hi?", "chosen": "Hello!", "rejected": "No.", "margin": 2}, "row")
    assert pair == PreferencePair(({"role": "user", "content": "Hi?"},), "Hello!", "No.", 2.0)


def test_conversational_rows_take_the_turns_before_the_answer_as_prompt():
    user = {"role": "user", "content": "Hi?"}
    row = {"chosen": [user, {"role": "assistant", "content": "Hello!"}], "rejected": [user, {"role": "assistant", "content": "No."}]}
    assert parse_row(row, "row") == PreferencePair((user,), "Hello!", "No.")
    # TRL's layout: prompt apart, answers as one-message lists
    row = {"prompt": [user], "chosen": [{"role": "assistant", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]}
    assert parse_row(row, "row") == PreferencePair((user,), "A", "B")


def test_hh_transcripts_split_into_turns():
    chosen = "\n\nHuman: What is 2+2?\n\nAssistant: 5?\n\nHuman: Sure?\n\nAssistant: 4."
    rejected = "\n\nHuman: What is 2+2?\n\nAssistant: 5?\n\nHuman: Sure?\n\nAssistant: Yes, 5."
    pair = parse_row({"chosen": chosen, "rejected": rejected}, "row")
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
    assert (pair.chosen, pair.rejected) == ("4.", "Yes, 5.")


@pytest.mark.parametrize("row, message", [
    ({"prompt": "x", "chosen": "a"}, "missing 'rejected'"),
    ({"prompt": "x", "chosen": "a", "rejected": 3}, "must both be strings or both message lists"),
    ({"chosen": "a", "rejected": "b"}, "missing 'prompt' and chosen is not a Human/Assistant transcript"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: OTHER\n\nAssistant: c"}, "differ before the last Assistant turn"),
    ({"prompt": "x", "chosen": "a", "rejected": "b", "margin": "big"}, "margin='big'; expected a finite number"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_bad_rows_get_one_line_errors_naming_the_row(row, message):
    with pytest.raises(PreferenceDataError) as err:
        parse_row(row, "data.jsonl line 7")
    assert str(err.value).startswith("data.jsonl line 7: ") and message in str(err.value) and "\n" not in str(err.value)


def test_jsonl_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n\n{not json\n")
    with pytest.raises(PreferenceDataError, match=r"prefs.jsonl. line 3: invalid JSON"):
        load_preferences(str(path))
    with pytest.raises(PreferenceDataError, match="file '.*missing.jsonl' not found"):
        load_preferences(str(tmp_path / "missing.jsonl"))
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert load_preferences(str(path)) == [PreferencePair(({"role": "user", "content": "a"},), "b", "c")]


def _gold(completions, references):
    return [float(len(c)) for c in completions]


def test_a_noiseless_labeller_prefers_the_higher_gold_score_and_the_ceiling_is_one():
    problems = [Problem(str(i), ({"role": "user", "content": "q"},), "") for i in range(50)]
    pairs, info = label_pairs(problems, ["aaaa"] * 50, ["a"] * 50, _gold, beta=100.0, seed=0)
    assert all(p.chosen == "aaaa" for p in pairs)
    assert all(i["ceiling"] == pytest.approx(1.0) for i in info)


def test_a_noisy_labeller_flips_labels_at_the_bradley_terry_rate():
    # gold gap 1, beta 1: P(prefer the longer) = sigmoid(1) = 0.731; 2000 pairs, std of the mean ~0.01
    problems = [Problem(str(i), ({"role": "user", "content": "q"},), "") for i in range(2000)]
    pairs, info = label_pairs(problems, ["aa"] * 2000, ["a"] * 2000, _gold, beta=1.0, seed=1)
    share = sum(p.chosen == "aa" for p in pairs) / len(pairs)
    assert share == pytest.approx(0.731, abs=0.04)
    assert info[0]["ceiling"] == pytest.approx(0.731, abs=1e-3)
