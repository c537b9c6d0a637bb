"""The candidate's side of assert-style tests: runs the completion, then answers calls from the judge.

The completion (``solution.py``) runs first, in full, before any test input exists anywhere this
process can look. Then each request line on descriptor 3 (``{"id", "args", "kwargs"}``) is
answered on descriptor 4 with ``{"id", "value"}`` or ``{"id", "error"}``. Nothing here is trusted:
the completion may rewrite this loop, exit, or send anything, and the judge treats every reply as
a mere claim about a return value. Expected values never come here.

This file is copied into the candidate's sandbox as ``serve.py``: ``python serve.py ENTRY_POINT``.
"""

from __future__ import annotations

import json
import os
import sys

REQUESTS, REPLIES = 3, 4


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:300]


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire  # the copy beside this file

    entry_point = sys.argv[1]
    requests, replies = os.fdopen(REQUESTS, "rb"), os.fdopen(REPLIES, "wb")
    namespace = {"__name__": "solution"}  # not "__main__": example usage under a main guard stays quiet
    try:
        exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), namespace)
        function, problem = namespace.get(entry_point), None
        if not callable(function):
            problem = f"NameError: the code defines no function {entry_point!r}"
    except Exception as exc:
        function, problem = None, _one_line(exc)
    for line in requests:
        request = json.loads(line)
        reply = {"id": request["id"]}
        try:
            if problem:
                raise RuntimeError(problem)
            value = function(*wire.decode(request["args"]), **wire.decode(request["kwargs"]))
            reply["value"] = wire.encode(value)
            text = json.dumps(reply)
        except Exception as exc:
            text = json.dumps({"id": request["id"], "error": _one_line(exc)})
        replies.write((text + "\n").encode())
        replies.flush()


if __name__ == "__main__":
    main()
