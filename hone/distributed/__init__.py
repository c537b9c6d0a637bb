"""Running a training step across processes and machines.

``hone.distributed.ray_rollouts`` puts the rollout side (``hone.rollout.worker.RolloutWorker``) on Ray
actors (``distributed.backend: ray``, ``pip install hone[ray]``). Nothing here is imported by
``import hone`` or by a run with the default ``distributed.backend: none``, so Ray stays optional.
"""
