"""The algorithm families a recipe names (``algorithm.name``) and what each one needs.

A variant declares whether it trains a critic and which ``algorithm`` fields only it reads, so the
configuration can refuse a field that would be silently ignored, and the learner loads a critic
(and a reference model, for ``kl_coef > 0``) only when something will read it.

>>> VARIANTS.get("ppo").critic, VARIANTS.get("ppo").default_advantage
(True, 'gae')
"""

from __future__ import annotations

from dataclasses import dataclass

from hone.algorithms.registry import Registry


@dataclass(frozen=True)
class Variant:
    default_advantage: str  # the estimator (a name in ADVANTAGE_ESTIMATORS) when algorithm.advantage is unset
    critic: bool  # trains a value function; exactly the variants whose estimators need one
    only_fields: tuple[str, ...] = ()  # algorithm fields that only this variant reads


VARIANTS: Registry[Variant] = Registry("algorithm")
# GRPO and its relatives (Dr.GRPO, RLOO, REINFORCE++, DAPO's knobs, GSPO's loss): outcome advantages, no critic
VARIANTS.register("grpo")(Variant("grpo", critic=False))
# PPO for language (Ziegler et al. 2019; Ouyang et al. 2022): a critic, the reward on the last token, GAE
VARIANTS.register("ppo")(Variant("gae", critic=True, only_fields=("gamma", "lam", "whiten_advantages", "vf_coef", "value_clip")))
