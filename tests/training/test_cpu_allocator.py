import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
from training.cpu_allocator import keep_freed_memory_mapped
if sys.argv[1] == "on":
    assert keep_freed_memory_mapped()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(64 << 20)  # 64 MiB, zero-filled: every page is touched
    del buffer
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


def _faults_after_first_allocation(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_buffers_are_reused_instead_of_remapped():
    # Default glibc: each 64 MiB buffer is a fresh mmap, so each of the 5 repeats faults in 16k pages again.
    assert _faults_after_first_allocation("off") > 5 * 10_000
    # Raised thresholds: the freed heap memory is reused, already mapped.
    assert _faults_after_first_allocation("on") < 2_000
