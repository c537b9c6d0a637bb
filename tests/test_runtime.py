"""hone.runtime: freed memory is kept in the heap, so a tensor allocated again takes no fresh pages."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, torch
    from hone.runtime import keep_heap

    def faults(cycles, floats=64 << 20):  # 256 MiB, far above glibc's largest mmap threshold
        counts = []
        for _ in range(cycles):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(floats).sum()  # allocate, touch every page, free
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return counts

    faults(1)
    plain = faults(4)
    assert keep_heap()
    print(*plain, "|", *faults(16))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    plain, kept = (list(map(int, half.split())) for half in out.split("|"))
    assert all(count > 60_000 for count in plain)  # every cycle: 65536 fresh 4 KiB pages
    # glibc takes a few cycles to stop splitting the big free chunk (up to 7 seen), then none fault
    assert sum(count > 6_000 for count in kept) <= 8 and max(kept[-4:]) < 6_000, kept
