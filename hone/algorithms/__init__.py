"""Pure tensor algorithms: advantage estimators, KL estimators, policy losses, aggregation.

Everything here imports only torch and takes tensors and scalars. Variants are looked up by
name in one registry per kind.
"""

from hone.algorithms.advantages import OUTCOME_ADVANTAGES, gae, gae_reference
from hone.algorithms.kl import KL_ESTIMATORS
from hone.algorithms.losses import (
    LOSS_AGGREGATIONS,
    POLICY_LOSSES,
    entropy_from_logits,
    masked_mean,
    truncated_is_weights,
)
from hone.algorithms.registry import Registry

__all__ = [
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "OUTCOME_ADVANTAGES",
    "POLICY_LOSSES",
    "Registry",
    "entropy_from_logits",
    "gae",
    "gae_reference",
    "masked_mean",
    "truncated_is_weights",
]
