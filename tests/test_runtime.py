"""hone.runtime: freed memory is kept in the heap, so a tensor allocated again takes no fresh pages."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys, torch
    from hone.runtime import keep_heap

    def faults(cycles=3, floats=64 << 20):  # 256 MiB, far above glibc's largest mmap threshold
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(cycles):
            torch.ones(floats).sum()  # allocate, touch every page, free
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults(1)
    plain = faults()
    assert keep_heap()
    faults(5)  # the heap settles: glibc takes a few cycles to stop splitting the big free chunk
    print(plain, faults())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    plain, kept = map(int, out.split())
    assert plain > 3 * 60_000  # 3 cycles x 65536 fresh 4 KiB pages
    assert kept < plain / 20
