"""The rollout worker: tokenizer, environment, engine and scorer pool, behind two calls.

``rollout(problems, sampling) -> groups`` runs the environment's loop with the engine and scores
the trajectories; ``load_weights(version, weights)`` takes the learner's new policy. Everything it
holds is built from the configuration here, and what crosses its boundary is plain data (problems,
sampling parameters, scored groups of trajectories, named tensors), so a later backend can put the
worker behind a Ray actor without changing either side. In one process the transformers engine
generates with the learner's own policy (``policy``), and ``load_weights`` has nothing to copy.

Held-out evaluation generates with transformers on the policy itself (at evaluation precision), so
its numbers do not depend on the rollout engine and match plain transformers; ``eval.engine: vllm``
evaluates with the rollout's vLLM engine instead, several times faster.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Sequence

import torch

from hone.data.records import Problem, ScoredGroup
from hone.rewards import RewardComponent, RewardScorer, WorkerPool, load_reward_fn
from hone.rollout.engine import Engine, SamplingParams
from hone.rollout.engine.factory import derive_max_model_len, make_engine
from hone.rollout.engine.hf import HFEngine
from hone.rollout.envs import Environment, RolloutTimes, make_env
from hone.rollout.evaluate import EvalReport, evaluate_as_configured


class RolloutWorker:
    def __init__(self, tokenizer, env: Environment, engine: Engine, *, pool: WorkerPool | None = None,
                 eval_env: Environment | None = None, eval_engine: Engine | None = None):
        self.tokenizer = tokenizer
        self.env = env
        self.engine = engine
        self.pool = pool
        self.eval_env = eval_env
        self.eval_engine = eval_engine
        self.version = 0  # the policy version the engine holds

    @classmethod
    def from_config(cls, cfg, tokenizer, policy, task, reward_model=None, *, shared: bool = True) -> "RolloutWorker":
        """The worker a run's Config describes. ``policy`` is the model the transformers engines generate with:
        the learner's own (``shared``: nothing to copy after an update), or the worker's copy in another
        process, which ``load_weights`` keeps in step; ``reward_model`` a loaded ``(model, tokenizer)`` or None."""
        pool = WorkerPool(cfg.rewards.workers, cfg.rewards.timeout_s) if cfg.rewards.workers > 0 else None
        components = [RewardComponent(spec.name, load_reward_fn(spec.name), spec.weight) for spec in cfg.rewards.functions]
        judge = [RewardComponent(cfg.eval.reward, load_reward_fn(cfg.eval.reward))]
        env = make_env(cfg.env, tokenizer, with_reward_model(cfg, RewardScorer(components, pool), reward_model, cfg.rewards.model_weight))
        # held out, the judge decides; a reward model's score rides along at weight 0, to be logged
        eval_env = make_env(cfg.env, tokenizer, with_reward_model(cfg, RewardScorer(judge, pool), reward_model, 0.0))
        turn = cfg.rollout.max_new_tokens  # the longest model turn the engine sees; evaluation's too when it evaluates
        if cfg.eval.engine == "vllm":
            turn = max(turn, cfg.eval.max_new_tokens or 0)
        max_model_len = cfg.rollout.max_model_len or derive_max_model_len(
            (len(env.prompt_ids(p)) for p in [*task.eval_problems(), *islice(task.train_problems(cfg.train.seed), 256)]),
            env_budget(cfg, turn))
        engine = make_engine(cfg.rollout, cfg.model, policy, tokenizer, seed=cfg.train.seed, max_model_len=max_model_len, shared=shared)
        evaluator = eval_engine(cfg, engine, policy, tokenizer, shared=shared)
        return cls(tokenizer, env, engine, pool=pool, eval_env=eval_env, eval_engine=evaluator)

    def rollout(self, problems: Sequence[Problem], sampling: SamplingParams) -> list[ScoredGroup]:
        """``sampling.n`` scored trajectories per problem, stamped with the policy version that generated them."""
        return self.env.rollout(problems, self.engine, sampling, version=self.version)

    def load_weights(self, version: int, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """The learner's policy at ``version``; an engine that shares the learner's model reads nothing
        (``weights`` is lazy: :meth:`hone.learner.learner.Learner.weights`)."""
        takers = [e for e in dict.fromkeys([self.engine, self.eval_engine]) if e is not None and not getattr(e, "shared", False)]
        if len(takers) > 1:
            weights = list(weights)
        for engine in takers:
            engine.load_weights(weights)
        self.version = version

    def evaluate(self, cfg, problems: list[Problem]) -> EvalReport:
        return evaluate_as_configured(cfg, self.eval_env, self.eval_engine, problems)

    @property
    def times(self) -> RolloutTimes:
        """Where the last ``rollout`` spent its time."""
        return self.env.last_times

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def eval_engine(cfg, engine: Engine, policy, tokenizer, *, shared: bool = True) -> Engine:
    """What held-out evaluation generates with: transformers on the policy itself (``eval.engine:
    transformers``, at evaluation precision), or the rollout engine when that is vLLM (``vllm``)."""
    if cfg.eval.engine == "transformers":
        if isinstance(engine, HFEngine) and engine.model is policy and not shared:
            shared = True  # the rollout engine's load_weights fills this very model
        return HFEngine(policy, tokenizer, shared=shared, batch_size=cfg.rollout.batch_size, bf16=cfg.eval.bf16)
    from hone.config import ConfigError
    from hone.rollout.engine.vllm import VLLMEngine

    if not isinstance(engine, VLLMEngine):
        raise ConfigError(f"eval.engine: 'vllm' evaluates with the rollout engine, which is {type(engine).__name__} here; "
                          "set rollout.engine=vllm (with vLLM installed) or eval.engine=transformers")
    return engine


def standalone_eval_engine(cfg, env: Environment, tokenizer, problems: Sequence[Problem]) -> Engine:
    """The engine ``eval.engine`` names for evaluating ``cfg.model`` outside training (``hone eval``), at the
    evaluation's precision: transformers on the loaded model, or vLLM sized for ``problems``' longest prompt."""
    if cfg.eval.engine == "transformers":
        from hone.models import load_model

        return HFEngine(load_model(cfg.model).eval(), tokenizer, batch_size=cfg.rollout.batch_size, bf16=cfg.eval.bf16)
    from hone.models import local_folder
    from hone.rollout.engine.vllm import VLLMEngine

    budget = env_budget(cfg, cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens)
    return VLLMEngine(local_folder(cfg.model), dtype="bfloat16" if cfg.eval.bf16 else "float32", seed=cfg.train.seed,
                      max_model_len=derive_max_model_len((len(env.prompt_ids(p)) for p in problems), budget))


def env_budget(cfg, max_new_tokens: int) -> int:
    """Tokens after the prompt that one episode can take: every model turn's ``max_new_tokens``, and each tool reply."""
    if cfg.env.name == "single_turn":
        return max_new_tokens
    from hone.rollout.envs.tools import MAX_OUTPUT_CHARS

    # a reply is at most MAX_OUTPUT_CHARS characters (each at least one token's worth) plus its chat-template framing
    return cfg.env.max_turns * max_new_tokens + (cfg.env.max_turns - 1) * (MAX_OUTPUT_CHARS + 32)


def with_reward_model(cfg, scorer: RewardScorer, reward_model, weight: float):
    """``scorer``, plus the reward model's score at ``weight`` when there is one (``(model, tokenizer)`` or None)."""
    if reward_model is None:
        return scorer
    from hone.rlhf.reward_model import RewardModelScorer

    return RewardModelScorer(*reward_model, weight, scorer, bf16=cfg.train.bf16)
