import io

from hone.watch.progress import Progress, format_duration, format_fields


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_mode_prints_one_line_per_step_with_eta():
    out, clock = io.StringIO(), FakeClock()
    with Progress(50, stream=out, clock=clock) as progress:  # StringIO is not a terminal
        clock.now += 12.0
        progress.update(1, reward=0.41, acc=0.53)
        clock.now += 12.6
        progress.update(2, reward=0.5)
        progress.note("eval: accuracy 0.53")
    lines = out.getvalue().splitlines()
    # step 1: 12 s/step, 49 steps left: 588 s = 9m48s
    assert lines[0] == "step 1/50  reward 0.41  acc 0.53  s/step 12  eta 9m48s"
    # step 2: 12.6 s since step 1, 48 left: 604.8 s = 10m05s
    assert lines[1] == "step 2/50  reward 0.5  s/step 12.6  eta 10m05s"
    assert lines[2] == "eval: accuracy 0.53"
    assert len(lines) == 3


def test_disabled_progress_prints_plain_lines_even_on_a_terminal():
    out, clock = Terminal(), FakeClock()
    with Progress(4, enabled=False, stream=out, clock=clock) as progress:
        clock.now += 2
        progress.update(1, loss=None)
    assert out.getvalue() == "step 1/4  loss -  s/step 2  eta 6s\n"


def test_resumed_run_counts_eta_from_its_own_steps():
    out, clock = io.StringIO(), FakeClock()
    with Progress(100, start_step=90, stream=out, clock=clock) as progress:
        clock.now += 30
        line = progress.update(93)
    # 3 new steps in 30 s: 10 s/step, 7 left: 70 s
    assert line == "step 93/100  s/step 10  eta 1m10s"


def test_live_bar_on_a_terminal_shows_fields_and_notes():
    out, clock = Terminal(), FakeClock()
    with Progress(10, stream=out, clock=clock) as progress:
        assert progress.live
        clock.now += 5
        progress.update(1, reward=0.25)
        progress.note("eval: accuracy 0.75")
    text = out.getvalue()
    assert "eval: accuracy 0.75" in text
    assert "reward 0.25" in text and "1/10" in text and "eta 45s" in text


def test_an_eval_before_step_1_skews_only_the_first_eta():
    out, clock = io.StringIO(), FakeClock()
    with Progress(10, stream=out, clock=clock) as progress:
        clock.now += 60  # a 50 s evaluation, then a 10 s step
        progress.note("eval @ step 0: accuracy 0.1")
        progress.update(1)
        clock.now += 10
        progress.update(2)
        clock.now += 20
        progress.update(3)
    lines = out.getvalue().splitlines()
    assert lines[1] == "step 1/10  s/step 60  eta 9m00s"  # 60 s x 9 left
    assert lines[2] == "step 2/10  s/step 10  eta 1m20s"  # 10 s since step 1, x 8 left
    assert lines[3] == "step 3/10  s/step 15  eta 1m45s"  # 30 s / 2 steps since step 1, x 7 left


def test_a_measured_step_time_replaces_the_wall_clock_one():
    out, clock = io.StringIO(), FakeClock()
    with Progress(3, stream=out, clock=clock) as progress:
        clock.now += 10
        line = progress.update(1, reward=0.5, s_per_step=8.0)
    # shown as given; the ETA still uses the wall clock (it includes evals and checkpoints): 10 s x 2
    assert line == "step 1/3  reward 0.5  s/step 8  eta 20s"


def test_formatting_helpers():
    assert format_duration(0) == "0s"
    assert format_duration(59.6) == "1m00s"
    assert format_duration(3600) == "1h00m"
    assert format_fields({"reward": 0.4, "n": 3, "s/step": 12.34}) == "reward 0.4  n 3  s/step 12.3"
