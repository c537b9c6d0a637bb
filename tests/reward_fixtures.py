"""Reward functions that tests load by dotted path (module-level so worker processes can import them)."""


def shorter_is_better(completions, references):
    """1 for an empty completion, falling linearly to 0 at 200 characters: varies even for random models."""
    return [max(0.0, 1.0 - len(c) / 200) for c in completions]


def sometimes_raises(completions, references):
    """Raises on completions of odd length: the trainer must mask and count these, not score them 0."""
    if any(len(c) % 2 for c in completions):
        raise RuntimeError("odd length")
    return [1.0 for _ in completions]
