"""Weights as NumPy arrays, the shape Ray's object store shares best.

Torch tensors are pickled, and every reader gets its own copy. NumPy arrays are written into the
store once and read in place by every worker on the machine (zero-copy), so a weight version costs
one copy however many workers read it. A CPU tensor's array is a view of its memory, so packing
copies nothing; bf16 travels as its 16 raw bits, so the workers load exactly what the learner
holds. A tensor that shares memory with an earlier one (a tied output embedding) travels once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch


@dataclass(frozen=True)
class Packed:
    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]  # bf16 as int16 bits
    bf16: tuple[bool, ...]
    aliases: tuple[tuple[str, str], ...]  # (name, the earlier name whose memory it shares)


def pack(weights: Iterable[tuple[str, torch.Tensor]]) -> Packed:
    """``weights`` as arrays that view their memory (CPU tensors; others are copied to the CPU).

    >>> w = torch.ones(2, 2)
    >>> p = pack([("a", w), ("b", torch.zeros(3, dtype=torch.bfloat16)), ("tied", w)])
    >>> p.names, [a.dtype.name for a in p.arrays], p.aliases
    (('a', 'b'), ['float32', 'int16'], (('tied', 'a'),))
    """
    unique, aliases = distinct(weights)
    names, arrays, bf16 = [], [], []
    for name, tensor in unique:
        tensor = tensor.cpu().contiguous()
        names.append(name)
        is_bf16 = tensor.dtype == torch.bfloat16
        arrays.append((tensor.view(torch.int16) if is_bf16 else tensor).numpy())
        bf16.append(is_bf16)
    return Packed(tuple(names), tuple(arrays), tuple(bf16), aliases)


def distinct(weights: Iterable[tuple[str, torch.Tensor]]) -> tuple[list[tuple[str, torch.Tensor]], tuple[tuple[str, str], ...]]:
    """``(unique, aliases)``: each tensor once (detached), and ``(name, earlier name)`` for every tensor that is an
    earlier one's memory under another name (a tied output embedding), judged where the tensors live.

    >>> w = torch.ones(2)
    >>> unique, aliases = distinct([("a", w), ("tied", w), ("b", w.clone())])
    >>> [name for name, _ in unique], aliases
    (['a', 'b'], (('tied', 'a'),))
    """
    unique, aliases, seen = [], [], {}
    for name, tensor in weights:
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if key in seen:
            aliases.append((name, seen[key]))
            continue
        seen[key] = name
        unique.append((name, tensor.detach()))
    return unique, tuple(aliases)


def unpack(packed: Packed) -> list[tuple[str, torch.Tensor]]:
    """The named tensors, as views of the arrays (read-only where the store maps them so: the engines copy out).

    >>> [(n, t.tolist()) for n, t in unpack(pack([("a", torch.arange(4.0).reshape(2, 2)), ("b", torch.ones(1, dtype=torch.bfloat16))]))]
    [('a', [[0.0, 1.0], [2.0, 3.0]]), ('b', [1.0])]
    """
    with warnings.catch_warnings():  # the object store maps buffers read-only; the engines copy out of them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {name: torch.from_numpy(array).view(torch.bfloat16) if is_bf16 else torch.from_numpy(array)
                   for name, array, is_bf16 in zip(packed.names, packed.arrays, packed.bf16)}
    return [*tensors.items(), *((name, tensors[source]) for name, source in packed.aliases)]
