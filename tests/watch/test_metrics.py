import json
import math
import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest
import torch

from hone.watch.metrics import MetricsLogger, accuracy_keys, pass_at_k, plot_run, read_rows, smooth


def test_pass_at_k_hand_worked():
    # n=4, c=1, k=1: 1 - C(3,1)/C(4,1) = 1 - 3/4 = 0.25
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # no correct samples: never passes
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 0, 5) == 0.0
    # n - c < k: every draw of k includes a correct one
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(4, 4, 1) == 1.0


def test_pass_at_k_with_k_1_is_the_fraction_correct():
    for n in range(1, 9):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_matches_enumerating_every_draw():
    # Reference twin: the fraction of the C(n, k) subsets that hold at least one correct sample.
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                draws = list(combinations(samples, k))
                expected = sum(any(d) for d in draws) / len(draws)
                assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_stays_finite_for_large_n():
    # C(1000, 500) overflows a float; the product form does not
    value = pass_at_k(1000, 10, 500)
    assert math.isfinite(value) and 0.99 < value <= 1.0


@pytest.mark.parametrize("n, c, k", [(4, 1, 5), (4, 5, 1), (-1, 0, 1), (4, -1, 1), (4, 1, -1), (4, 1, 0), (4.0, 1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_logger_appends_one_json_line_per_step(tmp_path):
    logger = MetricsLogger(tmp_path / "run")
    logger.log(1, **{"reward/mean": 0.25, "loss": torch.tensor(1.5), "tokens": np.int64(7)})
    logger.log(2, **{"reward/mean": np.float32(0.5), "eval/accuracy": None})
    path = tmp_path / "run" / "metrics.jsonl"
    assert logger.path == path
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["step"] == 1 and first["reward/mean"] == 0.25 and first["loss"] == 1.5 and first["tokens"] == 7
    assert isinstance(first["time"], float) and first["time"] >= 0
    assert logger.rows()[1]["eval/accuracy"] is None
    assert [r["step"] for r in logger.rows()] == [1, 2]


def test_logger_writes_non_finite_values_as_null(tmp_path):
    logger = MetricsLogger(tmp_path / "metrics.jsonl")  # a .jsonl path is the file itself
    logger.log(3, a=float("nan"), b=float("inf"), c=torch.tensor(float("-inf")))
    line = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    row = json.loads(line)
    assert row["a"] is None and row["b"] is None and row["c"] is None


def test_logger_is_append_only_across_instances(tmp_path):
    MetricsLogger(tmp_path).log(1, x=1.0)
    MetricsLogger(tmp_path).log(2, x=2.0)  # a resumed run keeps the earlier rows
    assert [r["x"] for r in read_rows(tmp_path / "metrics.jsonl")] == [1.0, 2.0]


def test_logger_rejects_non_numbers_and_the_time_key(tmp_path):
    logger = MetricsLogger(tmp_path)
    with pytest.raises(TypeError, match="'name'"):
        logger.log(1, name="abc")
    with pytest.raises(ValueError, match="time"):
        logger.log(1, time=3.0)
    assert logger.rows() == []


def test_read_rows_skips_a_truncated_last_line_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "x": 0.')
    assert read_rows(path) == [{"step": 1}]
    path.write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_rows(path)
    assert read_rows(tmp_path / "missing.jsonl") == []


def test_accuracy_keys_and_smooth():
    rows = [{"step": 1, "reward/mean": 0.1, "train/accuracy": 0.2}, {"step": 2, "eval/pass@4": 0.5, "pass@2": 0.1}]
    assert accuracy_keys(rows) == ["train/accuracy", "eval/pass@4"]
    # window 3: 1, (1+2)/2, (1+2+3)/3, (2+3+4)/3
    assert smooth([1.0, 2.0, 3.0, 4.0], 3) == pytest.approx([1.0, 1.5, 2.0, 3.0])


def test_plot_run_writes_a_png_atomically(tmp_path):
    logger = MetricsLogger(tmp_path)
    for step in range(1, 31):
        metrics = {"reward/mean": step / 30}
        if step % 10 == 0:
            metrics |= {"eval/accuracy": step / 40, "eval/pass@4": step / 35}
        logger.log(step, **metrics)
    logger.log(31, **{"reward/mean": float("nan")})  # null rows are skipped, not plotted as 0
    out = plot_run(logger.path, tmp_path / "plots" / "run.png", title="tiny")
    assert out == tmp_path / "plots" / "run.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.png"]  # no temp file left


def test_plot_run_without_rows_writes_nothing(tmp_path):
    assert plot_run(tmp_path / "metrics.jsonl", tmp_path / "run.png") is None
    assert not (tmp_path / "run.png").exists()


def test_importing_metrics_does_not_import_matplotlib():
    code = "import sys, hone.watch.metrics; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
