"""Weights as one flat buffer, the shape Ray's object store shares best.

A dict of tensors is pickled tensor by tensor, and every reader gets its own copy. One NumPy array
is stored once and read in place by every worker on the machine (zero-copy), so a weight version
costs one copy into the store however many workers read it. Tensors are packed in their own dtype
(bf16 travels as its 16 raw bits), so the workers load exactly what the learner holds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch


@dataclass(frozen=True)
class Packed:
    """Named tensors of one dtype, laid end to end in ``flat``."""

    flat: np.ndarray  # 1-D; bf16 stored as int16 bits
    dtype: torch.dtype
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]


def pack(weights: Iterable[tuple[str, torch.Tensor]]) -> list[Packed]:
    """One :class:`Packed` per dtype among ``weights``.

    >>> parts = pack([("a", torch.ones(2, 2)), ("b", torch.zeros(3, dtype=torch.bfloat16))])
    >>> [(p.dtype, p.names, p.flat.size) for p in parts]
    [(torch.float32, ('a',), 4), (torch.bfloat16, ('b',), 3)]
    """
    by_dtype: dict[torch.dtype, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in weights:
        by_dtype.setdefault(tensor.dtype, []).append((name, tensor.detach()))
    out = []
    for dtype, items in by_dtype.items():
        flat = torch.cat([t.reshape(-1).cpu() for _, t in items]) if items else torch.empty(0, dtype=dtype)
        array = flat.view(torch.int16).numpy() if dtype == torch.bfloat16 else flat.numpy()
        out.append(Packed(array, dtype, tuple(n for n, _ in items), tuple(tuple(t.shape) for _, t in items)))
    return out


def unpack(parts: list[Packed]) -> list[tuple[str, torch.Tensor]]:
    """The named tensors, as views of the packed buffers (read-only where the store maps them so: copy to keep).

    >>> [(n, t.tolist()) for n, t in unpack(pack([("a", torch.arange(4.0).reshape(2, 2)), ("b", torch.ones(1, dtype=torch.bfloat16))]))]
    [('a', [[0.0, 1.0], [2.0, 3.0]]), ('b', [1.0])]
    """
    out = []
    for part in parts:
        with warnings.catch_warnings():  # the object store maps buffers read-only; the engines copy out of them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            flat = torch.from_numpy(part.flat)
        flat = flat.view(torch.bfloat16) if part.dtype == torch.bfloat16 else flat
        offset = 0
        for name, shape in zip(part.names, part.shapes):
            size = int(np.prod(shape, dtype=np.int64))
            out.append((name, flat[offset:offset + size].view(shape)))
            offset += size
    return out
