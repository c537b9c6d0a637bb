"""A sentiment score, the gold labeller of the RLHF demonstration (a simulated human).

VADER (Hutto & Gilbert 2014; PyPI ``vaderSentiment``, which ships its lexicon, so nothing is
downloaded) rates text from -1 (most negative) to +1 (most positive) by a rule-based lexicon. It
stands in for a human rater: the reward model never sees it, only pairs it labelled.
"""

from __future__ import annotations

import functools
from typing import Sequence


@functools.cache
def _analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError("the vader_sentiment reward needs `pip install vaderSentiment`") from None
    return SentimentIntensityAnalyzer()


def vader_sentiment(completions: Sequence[str], references: Sequence[str]) -> list[float | None]:
    """VADER's compound score of each completion, in [-1, 1]; references are ignored.

    >>> [round(x, 2) for x in vader_sentiment(["I love it, wonderful!", "Terrible. I hate it.", "It is a phone."], ["", "", ""])]
    [0.85, -0.78, 0.0]
    """
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in completions]


vader_sentiment.continuous = True  # a graded score, never full credit: see hone.rewards.base.RewardFn
