"""Data: the typed records every stage passes on (``records``), the tasks that pose problems
(``tasks``), token padding shared by both sides (``padding``) and JSONL reading."""
