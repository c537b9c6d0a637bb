"""The learner side: the policy's forward, batches with advantages, the critic, the update and
the :class:`~hone.learner.learner.Learner` that owns policy, optimizer, reference and critic.

It never imports generation code (``hone.rollout``); a test checks the import graph.
"""
