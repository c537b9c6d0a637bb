from pathlib import Path

import pytest

from hone.algorithms import ADVANTAGE_ESTIMATORS
from hone.config import (
    AlgorithmConfig,
    Config,
    ConfigError,
    CriticConfig,
    EvalConfig,
    RewardSpec,
    RolloutConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)


def _write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def _override_error(*overrides: str) -> str:
    return _error(load_config, None, list(overrides))


# --- defaults and round trips ---------------------------------------------------------------------


def test_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.train.lr == 1e-5
    assert cfg.rollout.group_size == 8
    assert cfg.rewards.functions == (RewardSpec("math_verify", 1.0),)
    assert cfg.train.lora.target_modules[0] == "q_proj"
    assert cfg.run_dir == Path("runs/run")


def test_defaults_round_trip_through_a_plain_dict():
    data = config_to_dict(Config())
    assert data["eval"]["pass_k"] == [1, 4]  # tuples become lists
    assert data["rewards"]["functions"] == [{"name": "math_verify", "weight": 1.0}]
    assert config_from_dict(data) == Config()


def test_dump_then_load_gives_the_same_config(tmp_path):
    cfg = load_config(None, ["task.ops=+,-,*", "train.lr=3e-6", "algorithm.dual_clip=3", "name=x"])
    path = tmp_path / "out" / "config.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg


def test_sections_are_frozen_and_hashable():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # type: ignore[misc]
    assert hash(cfg) == hash(Config())


# --- YAML recipes ---------------------------------------------------------------------------------


def test_recipe_with_nested_sections_and_a_dotless_exponent(tmp_path):
    path = _write(tmp_path, """
name: gsm
model: HuggingFaceTB/SmolLM2-135M-Instruct
task:
  name: gsm8k
  path: openai/gsm8k
  system_prompt: null
train:
  lr: 1e-5          # PyYAML reads this as the string '1e-5'
  betas: [0.9, 0.95]
  lora:
    enabled: true
    r: 8
rewards:
  functions:
    - {name: math_verify}
    - {name: my_rewards:brevity, weight: 0.5}
output:
  dir: /tmp/{name}
""")
    cfg = load_config(path)
    assert cfg.task.name == "gsm8k" and cfg.task.path == "openai/gsm8k"
    assert cfg.train.lr == 1e-5 and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == (0.9, 0.95)
    assert cfg.train.lora == cfg.train.lora.__class__(enabled=True, r=8)
    assert cfg.rewards.functions == (RewardSpec("math_verify"), RewardSpec("my_rewards:brevity", 0.5))
    assert cfg.run_dir == Path("/tmp/gsm")
    assert cfg.rollout == RolloutConfig()  # sections the recipe leaves out keep their defaults


def test_empty_recipe_or_section_means_defaults(tmp_path):
    assert load_config(_write(tmp_path, "# nothing\n")) == Config()
    assert load_config(_write(tmp_path, "train:\n  # lr: 1e-4\neval:\n")) == Config()


def test_ints_are_accepted_for_floats_and_stored_as_floats():
    cfg = config_from_dict({"algorithm": {"kl_coef": 1}})
    assert cfg.algorithm.kl_coef == 1.0 and isinstance(cfg.algorithm.kl_coef, float)


# --- overrides ------------------------------------------------------------------------------------


def test_overrides_apply_on_top_of_the_recipe(tmp_path):
    path = _write(tmp_path, "train: {lr: 2.0e-5, steps: 7}\nalgorithm: {dual_clip: 3.0}\n")
    cfg = load_config(path, [
        "train.lr=1e-6",
        "algorithm.kl_coef=0.01",
        "rollout.group_size=4",
        "model=some/path:with=equals",
        "algorithm.dual_clip=null",
        "eval.pass_k=[1,8]",
        "eval.samples=8",
        "train.lora.enabled=true",
        "train.threads=2",
    ])
    assert cfg.train.lr == 1e-6
    assert cfg.train.steps == 7  # untouched recipe values survive
    assert cfg.algorithm.kl_coef == 0.01
    assert cfg.rollout.group_size == 4
    assert cfg.model == "some/path:with=equals"  # split at the first '=', strings stay verbatim
    assert cfg.algorithm.dual_clip is None
    assert cfg.eval.pass_k == (1, 8)
    assert cfg.train.lora.enabled is True
    assert cfg.train.threads == 2


def test_list_overrides_accept_commas_or_flow_syntax():
    assert load_config(None, ["task.ops=+,*"]).task.ops == ("+", "*")
    assert load_config(None, ["task.ops=[+, -]"]).task.ops == ("+", "-")
    assert load_config(None, ["train.betas=0.9,0.95"]).train.betas == (0.9, 0.95)
    assert load_config(None, ["eval.pass_k=1", "eval.samples=1"]).eval.pass_k == (1,)
    cfg = load_config(None, ["rewards.functions=[{name: a, weight: 2}, {name: b}]"])
    assert cfg.rewards.functions == (RewardSpec("a", 2.0), RewardSpec("b"))


def test_string_overrides_are_not_parsed_as_yaml():
    cfg = load_config(None, ["task.instruction=Answer: 42, then stop.", "name=2024", "task.system_prompt=null"])
    assert cfg.task.instruction == "Answer: 42, then stop."
    assert cfg.name == "2024"
    assert cfg.task.system_prompt is None


def test_later_overrides_win():
    assert load_config(None, ["train.steps=3", "train.steps=5"]).train.steps == 5


# --- error messages: one line naming the field, the value and what is accepted ------------------------


def test_unknown_key_suggests_the_closest():
    assert _override_error("train.lrr=1e-5") == (
        "unknown config key 'train.lrr'; did you mean 'train.lr'? expected one of: "
        "betas, bf16, compile, device, keep_freed_memory, lora, lr, max_grad_norm, micro_batch_size, micro_batch_tokens, nonfinite_limit, resume, seed, skip_zero_advantage, steps, threads, time_limit_s, warmup_steps, weight_decay"
    )


def test_unknown_key_in_a_recipe_names_the_file(tmp_path):
    path = _write(tmp_path, "trian:\n  lr: 1e-5\n")
    assert _error(load_config, path) == (
        f"recipe file '{path}': unknown config key 'trian'; did you mean 'train'? expected one of: "
        "algorithm, critic, distributed, env, eval, hooks, model, name, output, reward_model, rewards, rollout, task, train"
    )


def test_unknown_key_in_the_wrong_section_points_to_the_right_one():
    message = _error(config_from_dict, {"algorithm": {"group_size": 4}})
    assert message.startswith("unknown config key 'algorithm.group_size'; did you mean 'rollout.group_size'?")


def test_unknown_key_without_a_close_match():
    assert _override_error("output.zzz=1") == (
        "unknown config key 'output.zzz'; expected one of: dir, keep_last, loggers, plot, progress, save_every"
    )


def test_override_below_a_value_is_an_unknown_key():
    assert _override_error("model.name=x") == "unknown config key 'model.name': 'model' is a value, not a section"


def test_wrong_types():
    assert _override_error("train.lr=fast") == "train.lr: expected a number, got 'fast'"
    assert _override_error("rollout.group_size=4.5") == "rollout.group_size: expected an integer, got 4.5"
    assert _override_error("rollout.bf16=1") == "rollout.bf16: expected true or false, got 1"
    assert _override_error("rollout.bf16=yes please") == "rollout.bf16: expected true or false, got 'yes please'"
    assert _override_error("algorithm.dual_clip=big") == "algorithm.dual_clip: expected a number or null, got 'big'"
    assert _override_error("eval.pass_k=1,x") == "eval.pass_k[1]: expected an integer, got 'x'"
    assert _override_error("train=3") == "train: expected a mapping, got 3"
    message = _error(config_from_dict, {"rewards": {"functions": ["math_verify"]}})
    assert message == "rewards.functions[0]: expected a mapping, got 'math_verify'"
    message = _error(config_from_dict, {"rewards": {"functions": [{"weight": 2}]}})
    assert message == "rewards.functions[0].name: required, not set"
    assert _error(config_from_dict, {"task": {"ops": "+"}}) == "task.ops: expected a list of strings, got '+'"
    assert _error(config_from_dict, {"train": {"lr": True}}) == "train.lr: expected a number, got true"
    assert _override_error("rewards.timeout_s=nan") == "rewards.timeout_s: expected a number, got 'nan'"
    assert _override_error("rewards.functions=math_verify") == (
        "rewards.functions: expected a list of mappings, got 'math_verify'"
    )


def test_bool_strings_from_yaml_are_rejected():
    message = _error(config_from_dict, {"rollout": {"bf16": "true"}})
    assert message == "rollout.bf16: expected true or false, got 'true'"


def test_bad_literal_lists_the_accepted_values():
    assert _override_error("task.name=math") == (
        "task.name: expected 'arithmetic', 'gsm8k', 'reviews', 'code', 'code_stdio', 'humaneval', 'reasoning_gym' or 'mixture', got 'math'"
    )
    assert _override_error("rollout.engine=sglang") == "rollout.engine: expected 'auto', 'transformers' or 'vllm', got 'sglang'"


@pytest.mark.parametrize("override, message", [
    ("rollout.group_size=1", "rollout.group_size: must be >= 2 for group baselines, got 1"),
    ("train.device=gpu", "train.device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("rollout.temperature=0", "rollout.temperature: must be > 0, got 0.0"),
    ("rollout.top_p=1.5", "rollout.top_p: must be in (0, 1], got 1.5"),
    ("task.digits=7", "task.digits: must be between 1 and 6, got 7"),
    ("task.level=12", "task.level: arithmetic levels are 1..11 (2d - 1: two d-digit operands; 2d: a d + 1-digit and a d-digit one), got 12"),
    ("task.name=reasoning_gym", "task.dataset: names the generator of task.name=reasoning_gym (and only that task), got null"),
    ("task.name=mixture", "task.mixture: lists the tasks of task.name=mixture (and only that task), got []"),
    ("task.curriculum.name=hardest", "task.curriculum.name: expected 'uniform', 'learnability' or 'difficulty', got 'hardest'"),
    ("task.curriculum.band=[0.8,0.2]", "task.curriculum.band: must be [low, high] with 0 <= low < high <= 1, got [0.8, 0.2]"),
    ("task.curriculum.memory=0", "task.curriculum.memory: must be in (0, 1], got 0.0"),
    ("task.curriculum.power=0", "task.curriculum.power: must be > 0, got 0.0"),
    ("algorithm.max_oversample=1.3", "algorithm.max_oversample: refills groups that dynamic sampling drops; set algorithm.dynamic_sampling=true too, got 1.3"),
    ("train.time_limit_s=0", "train.time_limit_s: must be > 0, got 0.0"),
    ("task.ops=+,/", "task.ops: must be a non-empty list of '+', '-', '*', got ['+', '/']"),
    ("algorithm.kl_coef=-0.1", "algorithm.kl_coef: must be >= 0, got -0.1"),
    ("algorithm.dual_clip=1", "algorithm.dual_clip: must be > 1, got 1.0"),
    ("algorithm.clip_low=1", "algorithm.clip_low: must be in [0, 1), got 1.0"),
    ("train.lr=0", "train.lr: must be > 0, got 0.0"),
    ("train.threads=0", "train.threads: must be >= 1, got 0"),
    ("train.betas=[0.9]", "train.betas: must be two numbers [beta1, beta2], each in [0, 1), got [0.9]"),
    ("train.lora.r=0", "train.lora.r: must be >= 1, got 0"),
    ("train.lora.target_modules=", "train.lora.target_modules: must not be empty, got []"),
    ("rewards.functions=[]", "rewards.functions: needs rewards.functions or rewards.model to score completions, got []"),
    ("rewards.functions=[{name: ''}]", "rewards.functions[0].name: must not be empty, got ''"),
    ("rewards.timeout_s=0", "rewards.timeout_s: must be > 0, got 0.0"),
    ("output.keep_last=0", "output.keep_last: must be >= 1, got 0"),
    ("name= ", "name: must not be empty, got ' '"),
])
def test_range_errors_name_the_field_rule_and_value(override, message):
    assert _override_error(override) == message


def test_unknown_advantage_lists_the_registered_names():
    expected = ", ".join(ADVANTAGE_ESTIMATORS.names())
    assert _override_error("algorithm.advantage=ppo") == (
        f"algorithm.advantage: unknown advantage estimator 'ppo'; expected one of: {expected}"
    )
    assert _override_error("algorithm.policy_loss=dpo").startswith("algorithm.policy_loss: unknown policy loss 'dpo'")
    assert _override_error("algorithm.loss_agg=sum").startswith("algorithm.loss_agg: unknown")
    assert _override_error("algorithm.kl_estimator=k4").startswith("algorithm.kl_estimator: unknown")


def test_overlong_buffer_must_fit_inside_the_generation_cap():
    assert _override_error("rollout.max_new_tokens=16", "algorithm.overlong_buffer=16") == (
        "algorithm.overlong_buffer: must be < rollout.max_new_tokens (16), got 16"
    )
    cfg = load_config(None, ["algorithm.overlong_buffer=40", "rollout.max_new_tokens=64"])  # order is free
    assert cfg.algorithm.overlong_buffer == 40


def test_mini_batches_cannot_exceed_the_rollout_batch():
    assert _override_error("rollout.prompts_per_step=1", "rollout.group_size=2", "algorithm.mini_batches=3") == (
        "algorithm.mini_batches: must be <= rollout.prompts_per_step * rollout.group_size (2), got 3"
    )


def test_samples_must_cover_the_largest_k():
    assert _override_error("eval.pass_k=[1,8]") == (
        "eval.samples: must be >= max(pass_k) = 8, or 0 to disable sampled eval, got 4"
    )
    assert load_config(None, ["eval.pass_k=[1,8]", "eval.samples=0"]).eval.samples == 0


def test_missing_recipe_file(tmp_path):
    path = tmp_path / "x.yaml"
    assert _error(load_config, path) == f"recipe file '{path}' not found"


def test_malformed_yaml(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 1e-5\n  steps: [1, 2\n")
    message = _error(load_config, path)
    assert message.startswith(f"recipe file '{path}': invalid YAML at line 4: ")


def test_recipe_that_is_not_a_mapping(tmp_path):
    path = _write(tmp_path, "- train\n- eval\n")
    assert _error(load_config, path) == (
        f"recipe file '{path}': expected a mapping of config sections, got ['train', 'eval']"
    )


def test_bad_value_in_a_recipe_names_the_file_but_a_bad_override_does_not(tmp_path):
    path = _write(tmp_path, "train:\n  lr: fast\n")
    assert _error(load_config, path) == f"recipe file '{path}': train.lr: expected a number, got 'fast'"
    assert load_config(path, ["train.lr=1e-4"]).train.lr == 1e-4  # an override can repair the recipe
    good = _write(tmp_path, "train:\n  lr: 1e-5\n", "good.yaml")
    assert _error(load_config, good, ["train.lr=fast"]) == "train.lr: expected a number, got 'fast'"


@pytest.mark.parametrize("item", ["foo", "=3", ""])
def test_override_without_key_value(item):
    assert _override_error(item) == f"override {item!r}: expected key=value, e.g. train.lr=1e-5"


def test_override_with_invalid_yaml():
    assert _override_error("eval.pass_k=[1,").startswith("override 'eval.pass_k=[1,': invalid YAML at line 1: ")


def test_config_from_dict_rejects_a_non_mapping_and_prefixes_where():
    assert _error(config_from_dict, [1]) == "expected a mapping of config sections, got [1]"
    assert _error(config_from_dict, {"name": 3}, "sweep.json") == "sweep.json: name: expected a string, got 3"


# --- the dataclasses check themselves when built directly ---------------------------------------------


def test_direct_construction_is_checked_too():
    assert _error(lambda: RolloutConfig(group_size=0)) == "group_size: must be >= 1, got 0"
    assert _error(lambda: Config(rollout={"group_size": 1})) == "rollout.group_size: must be >= 2 for group baselines, got 1"
    assert Config(rollout={"group_size": 1}, algorithm={"name": "ppo"}).rollout.group_size == 1  # PPO needs no group
    assert _error(lambda: TrainConfig(lr="fast")) == "lr: expected a number, got 'fast'"
    assert _error(lambda: AlgorithmConfig(clip_low=-0.1)) == "clip_low: must be in [0, 1), got -0.1"
    assert _error(lambda: EvalConfig(pass_k=(1, 16))).startswith("samples: must be >= max(pass_k) = 16")
    assert TrainConfig(lr=1, betas=[0.9, 0.99]) == TrainConfig(lr=1.0, betas=(0.9, 0.99))  # normalised
    assert _error(lambda: Config(train={"lora": {"r": 0}})) == "train.lora.r: must be >= 1, got 0"


def test_critic_learning_rate_defaults_by_kind():
    """A separate critic is a pretrained model (1e-5); the shared head is a fresh layer (1e-3); a set lr wins."""
    assert CriticConfig(kind="separate").learning_rate == 1e-5
    assert CriticConfig(kind="shared").learning_rate == 1e-3
    assert CriticConfig(kind="shared", lr=3e-4).learning_rate == 3e-4


def test_min_new_tokens_must_fit_the_budget():
    assert _override_error("rollout.max_new_tokens=16", "rollout.min_new_tokens=17") == (
        "rollout.min_new_tokens: must be in [0, max_new_tokens=16], got 17"
    )


def test_a_field_the_chosen_variant_ignores_is_an_error():
    assert _override_error("algorithm.gamma=0.9") == (
        "algorithm.gamma: applies only to algorithm.name=ppo, not grpo (leave it at 1.0), got 0.9")
    assert _override_error("algorithm.advantage=gae").startswith("algorithm.advantage: needs a critic")
    assert _override_error("algorithm.name=ppo", "algorithm.advantage=rloo").startswith("algorithm.advantage: is an outcome estimator")
    assert _override_error("algorithm.kl_in_reward=true").startswith("algorithm.kl_in_reward: has no effect with kl_coef 0")
    assert _override_error("critic.kind=shared").startswith("critic: applies only to algorithm.name=ppo")
    assert _override_error("env.max_turns=5").startswith("env.max_turns: applies only to env.name=tools")
    assert load_config(None, ["algorithm.name=ppo"]).algorithm.advantage == "gae"  # the variant's own estimator
    assert load_config(None, ["algorithm.name=ppo", "critic.kind=shared", "algorithm.gamma=0.9"]).algorithm.gamma == 0.9


def test_a_demo_is_a_conversation_from_a_user_turn_to_an_assistant_turn():
    demo = "env.demo=[{role: user, content: '2 + 3 ='}, {role: assistant, content: '5'}]"
    assert [m.role for m in load_config(None, [demo]).env.demo] == ["user", "assistant"]
    assert _override_error("env.demo=[{role: user, content: '2 + 3 ='}]") == (
        "env.demo: must start with a user message and end with an assistant message, got ['user']")
    assert _override_error("env.demo=[{role: robot, content: hi}]") == "env.demo[0].role: expected 'user', 'assistant' or 'tool', got 'robot'"


def test_distributed_settings_need_the_ray_backend_and_staleness_turns_on_the_importance_correction():
    from hone.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"distributed.rollout_workers: needs distributed.backend=ray .*got 2"):
        load_config("recipes/quickstart.yaml", ["distributed.rollout_workers=2"])
    with pytest.raises(ConfigError, match=r"distributed.max_staleness: must be >= 0, got -1"):
        load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.max_staleness=-1"])
    with pytest.raises(ConfigError, match=r"distributed.backend"):
        load_config("recipes/quickstart.yaml", ["distributed.backend=slurm"])
    assert load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.max_staleness=1"]).algorithm.tis_cap == 2.0
    kept = load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.max_staleness=1", "algorithm.tis_cap=4"])
    assert kept.algorithm.tis_cap == 4.0
    assert load_config("recipes/quickstart.yaml", []).algorithm.tis_cap is None


def test_the_nccl_weight_transport_needs_gpus_on_the_workers_and_the_ray_backend():
    with pytest.raises(ConfigError, match=r"distributed.weight_transport: needs a GPU on every worker: set distributed.worker_gpus=1 .*got 'nccl'"):
        load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.weight_transport=nccl"])
    with pytest.raises(ConfigError, match=r"distributed.weight_transport: needs distributed.backend=ray .*got 'gloo'"):
        load_config("recipes/quickstart.yaml", ["distributed.weight_transport=gloo"])
    with pytest.raises(ConfigError, match=r"distributed.weight_transport: .*'tcp'"):
        load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.weight_transport=tcp"])
    with pytest.raises(ConfigError, match=r"distributed.worker_gpus: must be >= 0, got -1"):
        load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.worker_gpus=-1"])
    cfg = load_config("recipes/quickstart.yaml", ["distributed.backend=ray", "distributed.worker_gpus=1", "distributed.weight_transport=nccl"])
    assert (cfg.distributed.worker_gpus, cfg.distributed.weight_transport) == (1.0, "nccl")


def test_auto_weight_transport_is_nccl_only_for_gpu_workers_of_a_gpu_learner():
    pytest.importorskip("ray")
    import torch

    from hone.distributed.ray_rollouts import WorkerFailed, weight_transport

    def resolved(device, *extra):
        return weight_transport(load_config("recipes/quickstart.yaml", ["distributed.backend=ray", *extra]).distributed, torch.device(device))

    assert resolved("cpu") == "store" and resolved("cpu", "distributed.worker_gpus=1") == "store"
    assert resolved("cpu", "distributed.weight_transport=gloo") == "gloo"
    with pytest.raises(WorkerFailed, match=r"nccl sends from the learner's GPU, but train.device is cpu"):
        resolved("cpu", "distributed.worker_gpus=1", "distributed.weight_transport=nccl")
