import json
from pathlib import Path

import pytest

from hone.data.tasks import DatasetError, GSM8KTask

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "gsm8k"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/gsm8k is not beside this checkout")
def test_real_gsm8k_folder_splits_into_train_and_test():
    task = GSM8KTask(str(SHARED), eval_size=50)
    problems = task.eval_problems()
    assert len(problems) == 50 and problems[0].answer == "18"  # Janet's ducks
    first = next(task.train_problems(0))
    assert first.id.startswith("train-") and first.answer.lstrip("-").replace(".", "").isdigit()


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r for r in rows))
    return path


def test_single_file_is_split_by_seed(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"work\n#### {i}"} for i in range(10)]
    task = GSM8KTask(str(write(tmp_path / "d.jsonl", rows)), eval_size=3)
    held = {p.answer for p in task.eval_problems()}
    assert len(held) == 3
    train = {next(iter([p.answer])) for p, _ in zip(task.train_problems(0), range(50))}
    assert not held & train


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "dataset file '{p}' is empty"),
        ("{not json\n", "dataset file '{p}' line 1: invalid JSON (Expecting property name enclosed in double quotes)"),
        ('{"question": "q"}\n', "dataset file '{p}' line 1: expected an object with string fields 'question' and 'answer'"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        GSM8KTask(str(path))
    assert str(info.value) == message.format(p=path)


def test_missing_answer_marker_names_the_row(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"question": "q", "answer": "no marker"}] * 4)
    with pytest.raises(DatasetError, match=r"row (train|test)-0: answer has no '####' final-answer marker"):
        GSM8KTask(str(path), eval_size=2)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="dataset file '.*nope.jsonl' not found"):
        GSM8KTask(str(tmp_path / "nope.jsonl"))
