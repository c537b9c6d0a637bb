"""hone.config_loader on a toy schema: it knows nothing of hone's Config."""

from dataclasses import dataclass, field

import pytest

from hone.config_loader import ConfigError, apply_override, build


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    depth: int | None = None


def test_builds_nested_dataclasses_and_normalises_numbers():
    built = build(Outer, {"inner": {"rate": 1, "names": ["a", "b"]}, "depth": None}, "", Outer)
    assert built == Outer(Inner(1.0, ("a", "b")), None) and isinstance(built.inner.rate, float)


def test_a_key_in_the_wrong_section_points_at_the_right_one():
    with pytest.raises(ConfigError, match=r"^unknown config key 'depth'; did you mean 'depth'\?") as err:
        build(Inner, {"depth": 3}, "", Outer)
    assert "expected one of: names, rate" in str(err.value)
    with pytest.raises(ConfigError, match=r"^unknown config key 'inner.depth'; did you mean 'depth'\?"):
        build(Outer, {"inner": {"depth": 3}}, "", Outer)


def test_bad_values_name_the_path_and_what_is_accepted():
    with pytest.raises(ConfigError, match=r"^inner.names\[1\]: expected a string, got 3$"):
        build(Outer, {"inner": {"names": ["a", 3]}}, "", Outer)
    with pytest.raises(ConfigError, match=r"^depth: expected an integer or null, got 'deep'$"):
        build(Outer, {"depth": "deep"}, "", Outer)


def test_overrides_parse_by_the_fields_type():
    data: dict = {}
    for item in ["inner.rate=1e-3", "inner.names=x,y", "depth=null"]:
        apply_override(Outer, data, item)
    assert data == {"inner": {"rate": "1e-3", "names": ["x", "y"]}, "depth": None}  # YAML reads 1e-3 as a string
    assert build(Outer, data, "", Outer) == Outer(Inner(1e-3, ("x", "y")), None)  # the float field takes it
    with pytest.raises(ConfigError, match=r"^unknown config key 'inner.rate.x': 'inner.rate' is a value, not a section$"):
        apply_override(Outer, {}, "inner.rate.x=1")
