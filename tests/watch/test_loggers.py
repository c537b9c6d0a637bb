import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from hone.config import Config, ConfigError, OutputConfig
from hone.watch.loggers import TensorBoardLogger, make_loggers

# float32-exact values: TensorBoard stores a scalar as a 32-bit float
ROWS = {1: {"reward/mean": 0.5, "loss": 1.25}, 2: {"reward/mean": 0.75, "loss": 1.0}, 3: {"reward/mean": 1.0, "loss": 0.5}}


def fake_run(tmp_path, step=0):
    return SimpleNamespace(dir=tmp_path, step=step, cfg=Config(name="t"))


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def train_steps(logger, run, steps):
    logger.on_start(run)
    for step in steps:
        logger.after_update(run, step, ROWS[step])
        run.step = step
    logger.on_end(run)


def test_tensorboard_writes_every_row_and_eval(tmp_path):
    pytest.importorskip("tensorboard")
    run = fake_run(tmp_path)
    logger = TensorBoardLogger()
    # the evaluation before step 1 reaches the logger before its own on_start (EvalHook.on_start runs first)
    logger.at_eval(run, 0, {"eval/accuracy": 0.25, "time/eval": 2.0, "pass@1": 0.5, "eval/unscored": float("nan")})
    logger.on_start(run)
    for step in (1, 2, 3):
        row = {**ROWS[step], "kl": float("inf"), "note": "text", "missing": None}
        logger.after_update(run, step, row)
    logger.at_eval(run, 3, {"eval/accuracy": 0.75, "time/eval": 1.5})
    logger.on_end(run)
    assert read_scalars(tmp_path / "tensorboard") == {
        "reward/mean": [(1, 0.5), (2, 0.75), (3, 1.0)],
        "loss": [(1, 1.25), (2, 1.0), (3, 0.5)],
        "eval/accuracy": [(0, 0.25), (3, 0.75)],
        "time/eval": [(0, 2.0), (3, 1.5)],
        "eval/pass@1": [(0, 0.5)],  # a bare key gets "eval/"; NaN, inf, None and text are left out
    }


def test_tensorboard_resume_drops_the_steps_after_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    # the first run logged steps 1-3, then crashed; its checkpoint was at step 2
    train_steps(TensorBoardLogger(), fake_run(tmp_path), (1, 2, 3))
    row_after = {"reward/mean": 0.25, "loss": 2.0}
    resumed = TensorBoardLogger()
    run = fake_run(tmp_path, step=2)
    resumed.on_start(run)
    resumed.after_update(run, 3, row_after)
    resumed.on_end(run)
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2  # the resumed run appends a second event file
    assert read_scalars(tmp_path / "tensorboard") == {
        "reward/mean": [(1, 0.5), (2, 0.75), (3, 0.25)],
        "loss": [(1, 1.25), (2, 1.0), (3, 2.0)],
    }


TRACKIO_SCRIPT = textwrap.dedent("""
    import json, socket, sys
    from pathlib import Path
    from types import SimpleNamespace

    def offline(*args, **kwargs):
        raise OSError("the test blocks the network")

    socket.socket.connect = socket.socket.connect_ex = socket.create_connection = offline

    from hone.config import Config, OutputConfig
    from hone.watch.loggers import make_loggers

    run = SimpleNamespace(dir=Path(sys.argv[1]) / "my-run", step=0, cfg=Config(name="t"))
    [logger] = make_loggers(Config(output=OutputConfig(loggers=("trackio",))))
    logger.on_start(run)
    logger.after_update(run, 1, {"reward/mean": 0.5, "loss": float("nan")})
    logger.at_eval(run, 1, {"eval/accuracy": 0.25, "pass@1": 0.75})
    logger.after_update(run, 2, {"reward/mean": 0.75, "loss": 1.0})
    logger.on_end(run)

    from trackio.sqlite_storage import SQLiteStorage

    logs = [{k: v for k, v in row.items() if k != "timestamp"} for row in SQLiteStorage.get_logs("hone", "my-run")]
    config = SQLiteStorage.get_run_config("hone", "my-run")
    print("RESULT " + json.dumps({"logs": logs, "name": config["name"], "group_size": config["rollout"]["group_size"]}))
""")


def test_trackio_logs_locally(tmp_path):
    pytest.importorskip("trackio")
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "store"), "HF_HUB_OFFLINE": "1"}
    for name in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "SPACE_ID"):
        env.pop(name, None)
    # a subprocess: trackio reads TRACKIO_DIR when first imported and keeps the current run in a global
    done = subprocess.run([sys.executable, "-c", TRACKIO_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["logs"] == [
        {"step": 1, "reward/mean": 0.5},
        {"step": 1, "eval/accuracy": 0.25, "eval/pass@1": 0.75},
        {"step": 2, "reward/mean": 0.75, "loss": 1.0},
    ]
    assert (result["name"], result["group_size"]) == ("t", Config().rollout.group_size)
    assert (tmp_path / "store" / "hone.db").exists()
    assert not (tmp_path / "my-run").exists()  # trackio writes to its store, not the run folder


@pytest.mark.parametrize("name, module", [("tensorboard", "torch.utils.tensorboard"), ("trackio", "trackio")])
def test_missing_package_is_a_one_line_config_error(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ConfigError) as err:
        make_loggers(Config(output=OutputConfig(loggers=(name,))))
    assert str(err.value) == f"output.loggers: {name!r} needs the {name} package: pip install 'hone[{name}]'"


def test_no_loggers_and_no_duplicates():
    assert make_loggers(Config()) == []
    pytest.importorskip("tensorboard")
    [logger] = make_loggers(Config(output=OutputConfig(loggers=("tensorboard", "tensorboard"))))
    assert isinstance(logger, TensorBoardLogger)


def test_importing_hone_loggers_imports_neither_package():
    code = "import sys, hone.watch.loggers; print(sorted({'tensorboard', 'trackio'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
