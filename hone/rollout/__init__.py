"""The rollout side: generation engines, environments that own the rollout loop, and the
rollout worker that owns tokenizer, environment, engine and scorer pool.

Nothing on the learner side (``hone.learner``, ``hone.algorithms``) imports this package.
"""
