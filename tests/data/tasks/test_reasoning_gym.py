"""ReasoningGymTask and its reward: the split, levels, errors, and a conformance check over every generator."""

import pickle
import re
import subprocess
import sys
import time
from itertools import islice

import pytest

reasoning_gym = pytest.importorskip("reasoning_gym")

from hone.data.tasks.reasoning_gym import ReasoningGymTask  # noqa: E402
from hone.rewards.reasoning_gym import (  # noqa: E402
    REFUSED,
    build_dataset,
    is_reasoning_gym_spec,
    parse_rg_spec,
    reasoning_gym_score,
    regenerate,
    rg_spec,
)

WRONG = "hone-wrong-answer"


def train_ids(task, n, seed=0):
    return [p.id for p in islice(task.train_problems(seed), n)]


def reference(problem) -> str:
    return regenerate(parse_rg_spec(problem.answer))["answer"]


# --- the split ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "leg_counting"])
def test_no_held_out_question_is_trained_on(dataset):
    # leg_counting at level 0 has few distinct questions, so its train stream meets held-out ones often
    task = ReasoningGymTask(dataset, eval_size=20)
    held_out = {p.id for p in task.eval_problems()}
    trained = set(train_ids(task, 400)) | set(train_ids(task, 400, seed=1))
    assert len(held_out) >= 10 and not held_out & trained


def test_the_eval_list_is_the_same_on_every_call_and_every_copy():
    task = ReasoningGymTask("basic_arithmetic", level=2, eval_size=10)
    first = task.eval_problems()
    assert first == task.eval_problems() == ReasoningGymTask("basic_arithmetic", level=2, eval_size=10).eval_problems()
    assert len({p.id for p in first}) == 10


def test_the_train_stream_is_fixed_by_its_seed():
    task = ReasoningGymTask("basic_arithmetic")
    assert train_ids(task, 30) == train_ids(task, 30)
    assert train_ids(task, 30) != train_ids(task, 30, seed=1)


def test_the_task_seed_moves_the_split():
    ids = [{p.id for p in ReasoningGymTask("leg_counting", eval_size=20, seed=s).eval_problems()} for s in (0, 1)]
    assert ids[0] != ids[1]


def test_a_small_question_space_gives_fewer_held_out_problems():
    # chain_sum level 0 is "a + b" with one-digit terms: ~200 questions, ~20 of them held out
    problems = ReasoningGymTask("chain_sum", level=0, eval_size=50).eval_problems()
    assert 1 <= len(problems) < 50


# --- problems and specs ------------------------------------------------------------------------


def test_a_problem_is_the_question_then_the_instruction_and_its_answer_a_spec():
    task = ReasoningGymTask("chain_sum", level=3, system_prompt="Think first.", instruction="Answer in <answer> tags.")
    problem = next(task.train_problems(0))
    system, user = problem.messages
    assert system == {"role": "system", "content": "Think first."}
    assert user["role"] == "user" and user["content"].endswith("=\n\nAnswer in <answer> tags.")
    assert re.fullmatch(r"chain_sum:3:[0-9a-f]{12}", problem.id) and problem.level == 3
    spec = parse_rg_spec(problem.answer)
    assert (spec.dataset, spec.level) == ("chain_sum", 3)
    assert regenerate(spec)["question"] in user["content"]


def test_a_spec_round_trips_and_anything_else_is_not_one():
    text = rg_spec("chain_sum", 2, 7, 100, 99)
    assert parse_rg_spec(text).index == 99 and is_reasoning_gym_spec(text)
    not_specs = ["82", "", "null", "[1, 2]", rg_spec("chain_sum", 2, 7, 100, 100), rg_spec("chain_sum", "2", 7, 100, 1),
                 text.replace('"size":100', '"size":100,"extra":1')]
    assert [is_reasoning_gym_spec(t) for t in not_specs] == [False] * len(not_specs)


# --- levels ------------------------------------------------------------------------------------


def test_levels_come_from_the_curriculum():
    # chain_sum's curriculum: num_terms has 11 levels (2..12), num_digits 10 (1..10)
    assert ReasoningGymTask("chain_sum").levels == range(0, 11)
    assert ReasoningGymTask("acre").levels == range(0, 1)  # no curriculum: its config's defaults
    task = ReasoningGymTask("chain_sum", seed=3)
    harder = task.with_level(6)
    assert (harder.level, harder.seed, task.level) == (6, 3, 0)


def test_a_higher_level_poses_harder_problems():
    def terms_and_digits(level):
        questions = [p.messages[-1]["content"] for p in islice(ReasoningGymTask("chain_sum").with_level(level).train_problems(0), 40)]
        numbers = [re.findall(r"\d+", q.split(":")[1].split("=")[0]) for q in questions]
        return max(len(n) for n in numbers), max(len(d) for n in numbers for d in n)

    # level 0: exactly 2 one-digit terms; level 6: 2..8 terms of 1..7 digits (inclusive ranges)
    assert terms_and_digits(0) == (2, 1)
    terms, digits = terms_and_digits(6)
    assert terms > 4 and digits > 4


# --- errors ------------------------------------------------------------------------------------


def one_line_error(**fields) -> str:
    with pytest.raises(ValueError) as caught:
        ReasoningGymTask(**fields)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_fields_are_one_line_errors_naming_the_field():
    n = len(reasoning_gym.factory.DATASETS)
    assert one_line_error(dataset="chainsum") == f"task.dataset: unknown reasoning-gym generator 'chainsum'; see reasoning_gym.factory.DATASETS ({n} names)"
    assert one_line_error(dataset="chain_sum", level=11) == "task.level: chain_sum has levels 0..10, got 11"
    assert one_line_error(dataset="acre", level=-1) == "task.level: acre has levels 0..0, got -1"
    assert one_line_error(dataset="chain_sum", eval_size=0) == "task.eval_size: expected at least 1, got 0"
    with pytest.raises(ValueError, match=r"^task\.level: chain_sum has levels 0\.\.10, got 99$"):
        ReasoningGymTask("chain_sum").with_level(99)


def test_a_level_whose_config_reasoning_gym_rejects_is_an_error():
    # caesar_cipher's curriculum asks for rotations up to 50 at level 2; its config accepts 1..25
    assert one_line_error(dataset="caesar_cipher", level=2) == (
        "task.level: reasoning-gym's curriculum gives caesar_cipher an invalid config at level 2 (rotation must be in range [1,25])")


def test_a_missing_reasoning_gym_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import reasoning_gym` raise ImportError
    assert one_line_error(dataset="chain_sum") == "task.dataset: reasoning-gym is not installed; pip install 'hone[reasoning]'"


def test_importing_the_modules_does_not_import_reasoning_gym():
    code = "import sys, hone.data.tasks.reasoning_gym, hone.rewards.reasoning_gym; print('reasoning_gym' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# --- the reward --------------------------------------------------------------------------------


def test_the_reward_scores_with_reasoning_gyms_scorer():
    problem = next(ReasoningGymTask("basic_arithmetic", level=2).train_problems(0))
    gold = reference(problem)
    completions = [gold, f"  {gold}\n", f"<think>easy</think><answer>{gold}</answer>", f"<answer>0</answer> <answer>{gold}</answer>",
                   f"<answer>{WRONG}</answer> {gold}", WRONG, ""]
    assert reasoning_gym_score(completions, [problem.answer] * 7) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_a_reference_that_is_not_a_spec_cannot_be_scored():
    spec = next(ReasoningGymTask("basic_arithmetic").train_problems(0)).answer
    assert reasoning_gym_score(["4", "4", "4"], ["4", "", spec])[:2] == [None, None]


def test_a_scorer_that_raises_gives_none_not_zero():
    # prime_factorization's scorer calls int() on every factor: a word raises ValueError
    problem = next(ReasoningGymTask("prime_factorization").train_problems(0))
    assert reasoning_gym_score([WRONG, reference(problem)], [problem.answer] * 2) == [None, 1.0]


def test_the_reward_is_picklable_for_the_worker_pool():
    assert pickle.loads(pickle.dumps(reasoning_gym_score)) is reasoning_gym_score


# --- conformance: every generator hone exposes -------------------------------------------------

# In reasoning_gym.factory.DATASETS but not checked here, and why.
NOT_EXPOSED = {
    "composite": "a mixer of other generators, not a generator: its config needs a list of dataset specs "
                 "(defaults fail with 'Must specify at least one dataset'); mix hone tasks with MixtureTask instead",
}

# Generators that fail a check below at level 0, and why (investigated in reasoning-gym 0.1.25's scorers).
# Most give small "format credit" to any answer, "" included; hone passes their scores through unchanged.
KNOWN_FAILURES = {
    "advanced_geometry": "'' and a wrong answer score 0.01: the scorer's fallback when the answer is not the number",
    "arc_agi": "'' scores 0.05: parse_board('') is an empty grid, which the scorer credits as a well-formed wrong grid",
    "rearc": "'' scores 0.05: parse_board('') is an empty grid, which the scorer credits as a well-formed wrong grid",
    "boxnet": "no single reference answer (entry['answer'] is None): the scorer simulates any JSON action plan",
    "graph_color": "no single reference answer (entry['answer'] is None): the scorer checks any valid colouring",
    "propositional_logic": "no single reference answer (entry['answer'] is None): the scorer checks any valid conclusion; "
                           "a wrong answer scores 0.05",
    "rubiks_cube": "no single reference answer (entry['answer'] is None): the scorer simulates the moves; "
                   "anything, '' included, scores at least 0.01",
    "rush_hour": "no single reference answer (entry['answer'] is None): the scorer simulates the moves; "
                 "a wrong answer scores 0.01",
    "color_cube_rotation": "'' and a wrong answer score 0.01: format credit for any non-matching answer",
    "emoji_mystery": "'' and a wrong answer score 0.01: credit for any answer whose length differs from the sentence",
    "fraction_simplification": "'' and a wrong answer score 0.01: the scorer's fallback when no fraction parses",
    "power_function": "'' and a wrong answer score 0.01: Decimal() of a non-number raises and the scorer returns 0.01",
    "sentence_reordering": "'' and a wrong answer score 0.05: credit for any answer with a different word count",
    "prime_factorization": "'' scores 0.01 (no factors, whose product 1 is not n); a word makes the scorer's int() raise, "
                           "so the reward is None",
    "palindrome_generation": "a wrong answer scores 0.02: credit for any answer that is not a palindrome",
    "spell_backward": "a wrong answer scores 1/3: per-position letter credit ('hone-wrong-answer' shares its 'o' with 'fol')",
    "tsumego": "a wrong answer scores 0.01: credit for any answer that is not a board coordinate",
    "knight_swap": "no valid config at any level: the curriculum's inclusive node range always starts at level 0's 4, "
                   "which KnightSwapConfig rejects (min_nodes must be >= 6)",
}


# Generators whose scorer runs the answer as Python (sympy's parse_expr, or eval): a completion would execute in
# the reward worker with hone's own user, files and network (the WorkerPool bounds time, not what code does), so
# hone refuses them (REFUSED). The attack below runs every generator's own scorer to keep that list honest.
EXECUTES_ANSWER = {"binary_matrix", "countdown", "intermediate_integration", "n_queens", "polynomial_multiplication",
                   "puzzle24", "simple_integration", "spiral_matrix", "string_insertion"}


def runs_the_answer(dataset: str, scratch) -> bool:
    """Whether the generator's own scorer runs an answer as code: it creates a file the answer names."""
    spec = parse_rg_spec(rg_spec(dataset, 0, 0, 1000, 0))
    marker = scratch / dataset
    try:
        build_dataset(spec.dataset, 0, 0, 1000).score_answer(f"__import__('pathlib').Path({str(marker)!r}).touch()", regenerate(spec))
    except Exception:  # noqa: BLE001 - a scorer that chokes on the attack has not run it
        pass
    return marker.exists()


def check_generator(dataset: str) -> list[str]:
    """What is wrong with ``dataset`` as a hone task at level 0, checked on 2 training problems ([] if nothing)."""
    try:
        problems = list(islice(ReasoningGymTask(dataset).train_problems(0), 2))
    except Exception as exc:  # noqa: BLE001 - a generator that cannot even build is a failure to report
        return [f"task: {type(exc).__name__}: {exc}"]
    found = []
    for problem in problems:
        gold = reference(problem)
        if not isinstance(gold, str):
            found.append(f"reference answer is {gold!r}")
            gold = ""
        scores = reasoning_gym_score([gold, "", WRONG], [problem.answer] * 3)
        found += [f"{what} scores {s}" for what, s, want in zip(("reference", "''", "wrong"), scores, (1.0, 0.0, 0.0)) if s != want]
    return found


@pytest.fixture(scope="module")
def conformance():
    """{generator: problems found} for every generator hone exposes (all but NOT_EXPOSED and REFUSED), and the seconds it took."""
    start = time.perf_counter()
    exposed = sorted(set(reasoning_gym.factory.DATASETS) - set(NOT_EXPOSED) - set(REFUSED))
    return {name: check_generator(name) for name in exposed}, time.perf_counter() - start


def test_every_exposed_generator_conforms_or_is_a_known_failure(conformance):
    results, seconds = conformance
    failing = {name for name, found in results.items() if found}
    summary = f"reasoning-gym conformance: {len(results) - len(failing)} of {len(results)} exposed generators pass ({seconds:.1f} s)"
    print(f"\n{summary}")
    news = {name: results[name] if name in results else "not checked" for name in failing ^ set(KNOWN_FAILURES)}
    assert failing == set(KNOWN_FAILURES), f"{summary}; {len(KNOWN_FAILURES)} known failures; differs on {news}"


def test_refused_generators_are_not_built_or_scored():
    for name in REFUSED:
        with pytest.raises(ValueError, match=f"task.dataset: hone refuses {name}: "):
            ReasoningGymTask(name)
        assert reasoning_gym_score(["anything"], [rg_spec(name, 0, 0, 1000, 0)]) == [None]


def test_the_generators_whose_scorer_runs_the_answer_are_known_and_refused(tmp_path):
    executing = {name for name in sorted(set(reasoning_gym.factory.DATASETS) - set(NOT_EXPOSED)) if runs_the_answer(name, tmp_path)}
    assert executing == EXECUTES_ANSWER
    assert EXECUTES_ANSWER <= set(REFUSED)
