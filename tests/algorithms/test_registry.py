import pytest

from hone.algorithms import (
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    OUTCOME_ADVANTAGES,
    POLICY_LOSSES,
    Registry,
)


def _registry() -> Registry:
    registry: Registry = Registry("widget")

    @registry.register("zeta")
    def zeta() -> str:
        return "z"

    @registry.register("alpha")
    def alpha() -> str:
        return "a"

    return registry


def test_register_returns_the_function_and_get_finds_it():
    registry = _registry()
    assert registry.get("alpha")() == "a"
    assert registry.get("zeta")() == "z"


def test_names_are_sorted_and_contains_works():
    registry = _registry()
    assert registry.names() == ["alpha", "zeta"]
    assert "alpha" in registry
    assert "beta" not in registry


def test_duplicate_name_raises():
    registry = _registry()
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        registry.register("alpha")(lambda: "again")
    assert registry.get("alpha")() == "a"  # the original survives


def test_unknown_name_error_is_one_line_and_lists_sorted_names():
    registry = _registry()
    with pytest.raises(ValueError) as info:
        registry.get("beta")
    message = str(info.value)
    assert message == "unknown widget 'beta'; expected one of: alpha, zeta"
    assert "\n" not in message


def test_unknown_policy_loss_lists_real_names():
    with pytest.raises(ValueError) as info:
        POLICY_LOSSES.get("ppo")
    assert str(info.value) == "unknown policy loss 'ppo'; expected one of: gspo, ppo_clip"


def test_registered_variants():
    assert OUTCOME_ADVANTAGES.names() == [
        "drgrpo",
        "grpo",
        "reinforce_pp",
        "reinforce_pp_baseline",
        "rloo",
    ]
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3"]
    assert POLICY_LOSSES.names() == ["gspo", "ppo_clip"]
    assert LOSS_AGGREGATIONS.names() == [
        "seq-mean-token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
        "token-mean",
    ]
