"""Pure tensor algorithms: advantage estimators, KL estimators, policy losses, aggregation.

Everything here imports only torch and takes tensors and scalars. Variants are looked up by
name in one registry per kind.
"""

from hone.algorithms.advantages import ADVANTAGE_ESTIMATORS, OUTCOME_ADVANTAGES, AdvantageEstimator, gae, gae_reference, token_rewards, whiten
from hone.algorithms.kl import KL_ESTIMATORS, adaptive_kl_coef
from hone.algorithms.losses import (
    LOSS_AGGREGATIONS,
    POLICY_LOSSES,
    entropy_from_logits,
    masked_mean,
    truncated_is_weights,
)
from hone.algorithms.preference import bradley_terry_loss, pairwise_accuracy
from hone.algorithms.registry import Registry
from hone.algorithms.value import clipped_value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageEstimator",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "OUTCOME_ADVANTAGES",
    "POLICY_LOSSES",
    "Registry",
    "adaptive_kl_coef",
    "bradley_terry_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "gae",
    "gae_reference",
    "masked_mean",
    "pairwise_accuracy",
    "token_rewards",
    "truncated_is_weights",
    "whiten",
]
