"""Checkpoints as plain Hugging Face folders, written atomically.

A checkpoint folder loads with nothing but transformers::

    AutoModelForCausalLM.from_pretrained(folder); AutoTokenizer.from_pretrained(folder)

For a LoRA (PEFT) model the folder also holds the adapter alone in ``folder/adapter``, loadable with
``PeftModel.from_pretrained(base, folder / "adapter")``; the full weights beside it are the adapter
merged into a copy of the base. ``hone_state.json`` keeps whatever the trainer passes as ``extra``.

Atomicity: everything is written to ``.{name}.tmp-{pid}`` beside the target and renamed into place
only when complete. A crash before the rename leaves the previous checkpoint untouched (and the
staging folder is removed on any Python exception); the swap itself is two renames, so at worst a
crash between them (kill -9 at exactly that instant) leaves the old checkpoint at ``.{name}.old-{pid}``
rather than destroying it. This protects against crashes of the process, not against power loss
(nothing is fsynced).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

ADAPTER_FOLDER = "adapter"
STATE_FILE = "hone_state.json"


def save_checkpoint(model, tokenizer, folder: Path, *, merge_lora: bool = True, extra: dict | None = None, also=None) -> Path:
    """Write ``model`` (and ``tokenizer``, if given) to ``folder`` as safetensors; returns ``folder``.

    ``also(staging)``, if given, writes more into the folder before it goes into place (a critic, the
    trainer's state), so the whole checkpoint appears at once or not at all.

    A PEFT model's adapter goes to ``folder/adapter``. With ``merge_lora`` (the default) the adapter
    is also merged into a deep copy of the model and saved as full weights at ``folder``, leaving the
    training model and its adapters untouched; this briefly holds a second copy of the model in
    memory (on the model's device). Without ``merge_lora``, ``folder`` holds only the adapter and the
    tokenizer, and loading needs the base model.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if staging.exists():  # left by an earlier crash of a process with this pid
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        write_model(model, tokenizer, staging, merge_lora=merge_lora, extra=extra)
        if also is not None:
            also(staging)
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def write_model(model, tokenizer, staging: Path, *, merge_lora: bool = False, extra: dict | None = None) -> None:
    """Write ``model`` into the existing folder ``staging`` (see :func:`save_checkpoint`, which makes that atomic)."""
    if _is_peft(model):
        model.save_pretrained(staging / ADAPTER_FOLDER, safe_serialization=True)
        if merge_lora:
            import torch

            with torch.no_grad():
                merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(staging)  # transformers >= 5 always writes safetensors
            del merged
    elif hasattr(model, "save_pretrained"):
        model.save_pretrained(staging)
    else:  # a plain torch module (e.g. a value head): its tensors alone
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
    if extra is not None:
        text = json.dumps(_json_safe(extra), indent=2, allow_nan=False)
        (staging / STATE_FILE).write_text(text + "\n", encoding="utf-8")


def _swap_into_place(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(old, folder)  # put the previous checkpoint back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _json_safe(value: Any) -> Any:
    """``value`` with tensors and numpy scalars as Python numbers and NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_weights(folder: Path) -> dict:
    """Every tensor in the ``*.safetensors`` files of ``folder`` (one file or shards), by name."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint {folder}: no *.safetensors weights in it")
    return {name: tensor for f in files for name, tensor in load_file(str(f)).items()}


def latest_checkpoint(root: Path, marker: str, prefix: str = "step-") -> Path | None:
    """The newest folder ``{prefix}N`` under ``root`` (by N) that holds the file ``marker``, or None.

    Staging folders of a write that crashed (``.step-N.tmp-PID``) are hidden names and never match;
    a folder without ``marker`` was not written by a run that can resume from it.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    found = [(int(m.group(1)), p) for p in Path(root).glob(f"{prefix}*") if (m := pattern.fullmatch(p.name)) and (p / marker).is_file()]
    return max(found)[1] if found else None


def load_state(folder: Path) -> dict | None:
    """The ``extra`` dict saved with the checkpoint at ``folder``, or None if there was none."""
    path = Path(folder) / STATE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def prune_checkpoints(root: Path, keep_last: int, prefix: str = "step-") -> list[Path]:
    """Delete all but the newest ``keep_last`` folders named ``{prefix}N`` under ``root`` (by N).

    Anything else under ``root`` (other folders, files, staging folders) is left alone.
    Returns the deleted folders, oldest first.
    """
    if not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"prune_checkpoints: keep_last must be an integer >= 1, got {keep_last!r}")
    root = Path(root)
    if not root.is_dir():
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    numbered = []
    for path in root.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink():
            numbered.append((int(match.group(1)), path))
    numbered.sort()
    doomed = [path for _, path in numbered[: max(0, len(numbered) - keep_last)]]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
