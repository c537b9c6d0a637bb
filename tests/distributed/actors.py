"""Rollout-worker actors that misbehave on purpose, for the fault tests (module-level so Ray's workers import them)."""

from __future__ import annotations

import time
from pathlib import Path

from hone.distributed.actor import RayRolloutWorker


class HangingRolloutWorker(RayRolloutWorker):
    """Worker 0 hangs in ``rollout``: once per run folder when the run is named ``hang-once`` (a marker file
    there remembers across restarts), every time otherwise."""

    def rollout(self, shard):
        marker = Path(self.cfg.output.dir) / "hung"
        if self.index == 0 and (self.cfg.name != "hang-once" or not marker.exists()):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            time.sleep(3600)
        return super().rollout(shard)
