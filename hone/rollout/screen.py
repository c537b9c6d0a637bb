"""Screening prompts before paying for their rollouts: a probe on the policy's own reading of a prompt
predicts how much its group's rewards will spread, and a step generates the candidates it rates highest.

GRPO learns nothing from a group whose rewards all agree, and on a procedural mixture about half of
the embedded model's groups agree, however a curriculum weighs the tasks (docs/curricula.md). Where a
task's prompts differ in how often they are solved (``examples/task_spread.py`` measures it), a
choice of prompt can find the ones that split. Dynamic sampling pays to generate such a group and
then drops it. The screen pays one forward pass over each candidate prompt instead (half the layers,
no sampling, nothing decoded): with ``task.curriculum.screen: C`` the stream offers C candidates per
prompt wanted, and the screen keeps the ones its probe rates highest.

The probe is a logistic regression from the hidden state at the prompt's last token, halfway up the
policy being trained (so the features move with it), to the group's :func:`spread`: 4p(1 - p) for a
share p of correct samples, the learnability curriculum's own measure, per prompt. It is fitted by
L-BFGS with an L2 penalty to the most recent ``memory`` groups it chose, after every batch of groups
it is shown. A prompt that is posed once (as every procedural prompt is) has no history to go on,
so, unlike per-prompt estimators such as GRESO (Zheng et al. 2025, arXiv 2506.02177) or MoPPS (Qu et
al. 2025, arXiv 2507.04632), it predicts from the prompt itself.

Until the probe has seen ``warmup`` groups the screen keeps the stream's first candidates. After
that a share ``explore`` of every choice is drawn at random from the candidates: those groups keep
the probe's training data from collapsing onto what it already likes, and their split rate is the
unscreened baseline the screened choices are logged against (``screen/split_screened`` against
``screen/split_random``: the share of groups whose rewards were not all equal).
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from hone.data.records import Problem, ScoredGroup
from hone.runtime import autocast, device_of


class SplitProbe:
    """Logistic regression, refitted on demand, over a window of (features, outcome) examples; an outcome is
    in [0, 1] (1: the group split evenly; see :func:`spread`) and the fit is the cross-entropy against it.

    Features are standardised by the window's own mean and spread before fitting, so the penalty
    ``l2`` (on the mean log-loss) means the same whatever the hidden size.
    """

    def __init__(self, memory: int = 512, l2: float = 0.01):
        self.memory, self.l2 = memory, l2
        self.x: list[torch.Tensor] = []  # each [D]
        self.y: list[float] = []  # each group's spread, in [0, 1]
        self.w: torch.Tensor | None = None  # [D], on standardised features
        self.b = torch.zeros(())
        self.mean = self.scale = None  # [D] each

    def __len__(self) -> int:
        return len(self.y)

    def add(self, features: torch.Tensor, outcomes: Sequence[float]) -> None:
        """Examples ``features`` [N, D] with their outcomes in [0, 1]; only the latest ``memory`` are kept."""
        self.x = [*self.x, *features.float().cpu()][-self.memory:]
        self.y = [*self.y, *(float(s) for s in outcomes)][-self.memory:]

    def fit(self) -> None:
        x, y = torch.stack(self.x), torch.tensor(self.y)
        self.mean, self.scale = x.mean(0), x.std(0, unbiased=False) + 1e-6
        z = (x - self.mean) / self.scale
        w = torch.zeros(z.shape[1], requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + self.l2 * w.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.w, self.b = w.detach(), b.detach()

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The predicted outcome of each of ``features`` [N, D], [N]."""
        assert self.w is not None, "fit() before predict()"
        return torch.sigmoid((features.float().cpu() - self.mean) / self.scale @ self.w + self.b)

    def state_dict(self) -> dict:
        return {"x": torch.stack(self.x) if self.x else torch.zeros(0), "y": list(self.y)}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.y = list(state["x"]), list(state["y"])
        self.w = None
        if self.y:
            self.fit()


def spread(group: ScoredGroup) -> float:
    """What the probe learns to predict: four times the variance of the group's scores, capped at 1. With scores
    in [0, 1] this is 1 for an even split of 0s and 1s, 4p(1 - p) for a share p of 1s, and near 0 for scores that
    barely differ (a partial-credit scorer's 0.1 against 0.2), which teach little: it is the learnability
    curriculum's p(1 - p), per prompt (docs/curricula.md)."""
    scores = [r for r in group.rewards if r is not None]
    if len(scores) < 2:
        return 0.0
    mean = sum(scores) / len(scores)
    return min(1.0, 4 * sum((s - mean) ** 2 for s in scores) / len(scores))


class PolicyFeatures:
    """The hidden state at each prompt's last token, from ``policy`` as it is now (no gradient), after the first
    ``depth`` share of its decoder layers: the rest of the forward pass is skipped (the probe read as well at
    half depth as at the top, for half the cost; docs/curricula.md), and so is the LM head."""

    def __init__(self, policy, prompt_ids: Callable[[Problem], list[int]], *, depth: float = 0.5, bf16: bool = False, batch_size: int = 32):
        self.policy, self.prompt_ids, self.bf16, self.batch_size = policy, prompt_ids, bf16, batch_size
        layers = decoder_layers(policy)
        self.layer = layers[max(1, round(depth * len(layers))) - 1]

    @torch.no_grad()
    def __call__(self, problems: Sequence[Problem]) -> torch.Tensor:
        device = device_of(self.policy)
        out = []
        for i in range(0, len(problems), self.batch_size):
            ids = [self.prompt_ids(p) for p in problems[i:i + self.batch_size]]
            lengths = torch.tensor([len(x) for x in ids])
            tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
            mask = torch.zeros_like(tokens)
            for row, x in enumerate(ids):  # right padding: a causal model's last real token never sees it
                tokens[row, :len(x)], mask[row, :len(x)] = torch.tensor(x), 1
            hidden = self._hidden(tokens.to(device), mask.to(device))
            out.append(hidden[torch.arange(len(ids)), lengths - 1].float().cpu())
        return torch.cat(out)

    def _hidden(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The output of ``self.layer`` [B, T, D]: a hook keeps it and stops the forward pass there."""
        kept = []

        def stop(module, args, output):
            kept.append(output[0] if isinstance(output, tuple) else output)
            raise _Stop

        handle = self.layer.register_forward_hook(stop)
        try:
            with autocast(tokens.device, self.bf16):
                self.policy(input_ids=tokens, attention_mask=mask, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return kept[0]


class _Stop(Exception):
    """Raised by PolicyFeatures' hook once it has the layer it reads."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the first ModuleList as long as ``config.num_hidden_layers``."""
    count = model.config.num_hidden_layers
    return next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == count)


class Screen:
    """Keeps ``n`` of a pool of candidate problems: the ones the probe rates highest, and a random ``explore``
    share. ``observe`` teaches the probe from the groups the kept problems made."""

    def __init__(self, features: Callable[[Sequence[Problem]], torch.Tensor], candidates: int, *, explore: float = 0.25,
                 memory: int = 512, warmup: int = 32, per_task: bool = False, seed: int = 0):
        self.features, self.candidates, self.explore, self.warmup = features, candidates, explore, warmup
        self.per_task = per_task  # keep each task's share of the pool and choose within it, so the curriculum's task shares stand
        self.probe = SplitProbe(memory)
        self.rng = random.Random(f"screen:{seed}")
        self.pending: dict[tuple[str, str], tuple[torch.Tensor, bool]] = {}  # (task, id) -> (features, drawn at random)
        self._seen: dict[str, list[float]] = {"screened": [], "random": [], "predicted": []}

    def choose(self, pool: Sequence[Problem], n: int) -> list[int]:
        """Indices of the ``n`` problems of ``pool`` to generate, in pool order."""
        if self.probe.w is None or len(pool) <= n:  # not enough groups seen yet to fit, or no choice: the stream's own order
            chosen = list(range(min(n, len(pool))))
            random_ = set(chosen)
            features = self.features([pool[i] for i in chosen])  # only the kept ones need reading
        else:
            features = self.features(pool)
            random_ = set(self.rng.sample(range(len(pool)), round(self.explore * n)))
            p = self.probe.predict(features)
            rest = sorted((i for i in range(len(pool)) if i not in random_), key=lambda i: -float(p[i]))
            chosen = sorted([*random_, *(self._per_task(pool, n, random_, rest) if self.per_task else rest[:n - len(random_)])])
            self._seen["predicted"] += [float(p[i]) for i in chosen if i not in random_]
        for i in chosen:
            self.pending[(pool[i].task, pool[i].id)] = (features[i].clone(), i in random_)  # a row of its own, not a view of the pool's
        return chosen

    @staticmethod
    def _per_task(pool: Sequence[Problem], n: int, random_: set[int], rest: list[int]) -> list[int]:
        """The best of ``rest`` (ranked) task by task: each task keeps its share of ``n`` by its count in ``pool``
        (largest remainders, ties to the task met first), less what the random draw already gave it; slots a
        task cannot fill go to the best that are left of any task.

        >>> pool = [Problem(id=str(i), messages=(), answer="", task="ab"[i % 2]) for i in range(8)]  # a, b, a, b, ...
        >>> Screen._per_task(pool, 4, {0}, [2, 4, 6, 1, 3, 5, 7])  # a's share is 2, one of them drawn at random
        [2, 1, 3]
        """
        count: dict[str, int] = {}
        for problem in pool:
            count[problem.task] = count.get(problem.task, 0) + 1
        exact = {task: n * c / len(pool) for task, c in count.items()}
        quota = {task: int(e) for task, e in exact.items()}
        for task in sorted(exact, key=lambda t: -(exact[t] - quota[t]))[:n - sum(quota.values())]:
            quota[task] += 1
        for i in random_:
            quota[pool[i].task] -= 1
        want = n - len(random_)
        kept = []
        for i in rest:
            if quota[pool[i].task] > 0:
                quota[pool[i].task] -= 1
                kept.append(i)
        kept = kept[:want]  # a task the random draw over-served left the others more quota than slots: best first
        taken = set(kept)
        return kept + [i for i in rest if i not in taken][:want - len(kept)]

    def observe(self, groups: Sequence[ScoredGroup]) -> None:
        """Scored groups of chosen problems; the probe is refitted on them once there are ``warmup``."""
        new = [(self.pending.pop((g.problem.task, g.problem.id)), g) for g in groups if (g.problem.task, g.problem.id) in self.pending]
        if not new:
            return
        for (_, at_random), group in new:
            self._seen["random" if at_random or self.probe.w is None else "screened"].append(float(not group.zero_variance))
        self.probe.add(torch.stack([f for (f, _), _ in new]), [spread(g) for _, g in new])
        if len(self.probe) >= self.warmup:
            self.probe.fit()

    def metrics(self) -> dict[str, float]:
        """Since the last call: the split rate of screened and of randomly drawn groups, and the probe's mean prediction for the screened."""
        out = {f"screen/split_{k}": sum(v) / len(v) for k, v in self._seen.items() if v and k != "predicted"}
        if self._seen["predicted"]:
            out["screen/predicted"] = sum(self._seen["predicted"]) / len(self._seen["predicted"])
        out["screen/examples"] = float(len(self.probe))
        self._seen = {k: [] for k in self._seen}
        return out

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"probe": self.probe.state_dict(), "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        self.probe.load_state_dict(state["probe"])
        if len(self.probe) < self.warmup:
            self.probe.w = None
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.pending = {}


def make_screen(cfg, policy, env) -> Screen | None:
    """The screen ``task.curriculum`` asks for (None when ``screen`` is 1), reading ``policy`` through ``env``'s prompts."""
    c = cfg.task.curriculum
    if c.screen == 1:
        return None
    return Screen(PolicyFeatures(policy, env.prompt_ids, bf16=cfg.train.bf16), c.screen, explore=c.screen_explore, memory=c.screen_memory,
                  warmup=c.screen_warmup, per_task=c.screen_per_task, seed=cfg.train.seed)
