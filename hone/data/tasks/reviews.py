"""Review openings to continue: the prompts of the RLHF sentiment demonstration.

Each problem asks the model to continue the opening of a review of some product or place. The
openings are deliberately neutral ("I bought this laptop last month and"), so a continuation can
go either way, and a gold labeller (VADER sentiment) or a learned reward model has room to prefer
one. There is no reference answer: ``Problem.answer`` is empty and rewards read only the text.

Openings come from subjects x templates; one in five is held out by a hash of the opening and
the seed, so held-out prompts are never trained on.

>>> task = ReviewsTask(eval_size=10)
>>> len(task.eval_problems()), task.eval_problems()[0].messages[-1]["content"][:45]
(10, 'Continue this review in one or two sentences:')
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterator

from hone.data.records import Problem

SUBJECTS = (
    "movie", "restaurant", "hotel", "phone", "novel", "laptop", "album", "video game", "coffee shop", "airline",
    "headphones", "museum", "car", "TV series", "gym", "bakery", "podcast", "mattress", "theme park", "blender",
    "bookstore", "concert", "hiking boots", "dentist", "pizza place",
)
TEMPLATES = (
    "I tried this {s} last week and", "My first impression of this {s} was that", "After a month with this {s}, I",
    "Honestly, the {s}", "The best way to describe this {s} is", "I went in with no expectations, and the {s}",
    "My friends recommended this {s}, so", "I have been thinking about this {s} since yesterday because",
    "When I told my family about the {s}, I said", "If you are wondering whether this {s} is worth it,",
    "The {s} was", "Compared with others I have tried, this {s}", "On the second visit, the {s}",
    "I will keep this review short: the {s}", "Three words come to mind for this {s}:",
)
HELD_OUT_SHARE = 5  # one opening in 5 is held out


@dataclass(frozen=True)
class ReviewsTask:
    instruction: str = "Continue this review in one or two sentences:"
    system_prompt: str | None = None
    eval_size: int = 40
    seed: int = 0
    name: str = "reviews"

    def __post_init__(self):
        held = sum(self._held_out(o) for o in self.openings())
        if self.eval_size > held:
            raise ValueError(f"task.eval_size: {self.eval_size} is more than the {held} held-out review openings")

    @staticmethod
    def openings() -> list[str]:
        return [t.format(s=s) for s in SUBJECTS for t in TEMPLATES]

    def _held_out(self, opening: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{opening}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % HELD_OUT_SHARE == 0

    def _problem(self, opening: str) -> Problem:
        messages = ({"role": "system", "content": self.system_prompt},) if self.system_prompt is not None else ()
        messages += ({"role": "user", "content": f'{self.instruction} "{opening}"'},)
        return Problem(id=opening, messages=messages, answer="")

    def train_problems(self, seed: int) -> Iterator[Problem]:
        train = [o for o in self.openings() if not self._held_out(o)]
        rng = random.Random(f"train:{self.seed}:{seed}")
        while True:  # every opening once per pass, in a fresh order each pass
            rng.shuffle(train)
            yield from (self._problem(o) for o in train)

    def eval_problems(self) -> list[Problem]:
        held = [o for o in self.openings() if self._held_out(o)]
        random.Random(f"eval:{self.seed}").shuffle(held)
        return [self._problem(o) for o in held[: self.eval_size]]
