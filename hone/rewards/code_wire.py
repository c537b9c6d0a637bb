"""Plain values on the wire between the candidate's sandbox and the judge's (standard library only).

Arguments and return values cross as JSON with a tag for each type JSON lacks. :func:`decode` is
the trusted half: whatever bytes the candidate sends, it returns only exact built-in types (None,
bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset) or raises, so no object
of the candidate's making (an ``__eq__`` that is always true, a ``str`` subclass) ever reaches a
test's comparison. :func:`encode` runs on both sides; on the candidate's it is only a claim.

This file is copied into each sandbox as ``wire.py``.

>>> value = [1, (2.5, "x"), {3: frozenset({None, True})}, b"\\x00", 1j]
>>> back = decode(json.loads(json.dumps(encode(value))))
>>> back == value, type(back[1]), type(back[2][3])
(True, <class 'tuple'>, <class 'frozenset'>)
>>> decode({"t": [1, 2], "extra": 0})
Traceback (most recent call last):
...
ValueError: not a plain value: {'t': [1, 2], 'extra': 0}
"""

from __future__ import annotations

import json

_CONTAINERS = {"t": tuple, "s": set, "f": frozenset}


def encode(value):
    """A JSON-able form of a plain value; TypeError for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value if type(value) in (bool, str) or value is None else str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)  # an int subclass travels as the plain int it holds
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, complex):
        return {"c": [value.real, value.imag]}
    if isinstance(value, (bytes, bytearray)):
        return {"b": bytes(value).hex()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"f" if isinstance(value, frozenset) else "s": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot send a {type(value).__name__}: only None, bool, int, float, complex, str, bytes, list, tuple, dict and sets cross")


def decode(obj):
    """The plain value ``obj`` (parsed JSON) stands for, built from exact built-in types only."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode(v) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        (tag, body), = obj.items()
        if tag in _CONTAINERS and type(body) is list:
            return _CONTAINERS[tag](decode(v) for v in body)
        if tag == "d" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
            return {decode(k): decode(v) for k, v in body}
        if tag == "b" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "c" and type(body) is list and len(body) == 2 and all(type(x) in (int, float) for x in body):
            return complex(body[0], body[1])
    raise ValueError(f"not a plain value: {str(obj)[:200]}")
