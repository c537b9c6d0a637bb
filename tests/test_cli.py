"""Bad input gets one line on stderr and exit code 2, never a traceback."""

import pytest

from hone.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "nope.yaml"], "hone: error: recipe file 'nope.yaml' not found"),
        (["train", "recipes/quickstart.yaml", "train.lrr=1"], "hone: error: unknown config key 'train.lrr'; did you mean 'train.lr'?"),
        (["train", "recipes/quickstart.yaml", "train.lr=fast"], "hone: error: train.lr: expected a number, got 'fast'"),
        (["train", "recipes/quickstart.yaml", "model=/no/such/model"], "hone: error: model '/no/such/model': not a model folder"),
        (["eval", "recipes/quickstart.yaml", "task.name=gsm8k", "task.path=/no/file.jsonl"], "hone: error: dataset file '/no/file.jsonl' not found"),
        (["train", "recipes/quickstart.yaml", "rewards.functions=[{name: nope}]"], "hone: error: unknown reward 'nope'"),
        (["train", "recipes/quickstart.yaml", "rollout.engine=transformers", "eval.engine=vllm"],
         "hone: error: eval.engine: 'vllm' evaluates with the rollout engine, so it needs rollout.engine vllm or auto, got 'vllm'"),
        (["eval", "recipes/quickstart.yaml", "eval.engine=fast"], "hone: error: eval.engine: expected 'transformers' or 'vllm', got 'fast'"),
    ],
)
def test_user_mistakes_are_one_line(capsys, tmp_path, argv, expected):
    argv = argv + [f"output.dir={tmp_path}/run"] if argv[0] == "train" else argv
    code, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith(expected), err
    assert "\n" not in err


def test_malformed_yaml(capsys, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  lr: [1,\n")
    code, err = run(capsys, "train", str(recipe))
    assert code == 2 and err.startswith(f"hone: error: recipe file '{recipe}': invalid YAML at line") and "\n" not in err


def test_empty_dataset(capsys, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    code, err = run(capsys, "eval", "recipes/quickstart.yaml", "task.name=gsm8k", f"task.path={data}")
    assert (code, err) == (2, f"hone: error: dataset file '{data}' is empty")
