"""bench.machine.OtherCpu: the cores other processes keep busy during a timing (a shared machine's
timings are read with it)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from voxport.bench.machine import OtherCpu

SPIN = "import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_child_spinning_in_the_window_is_counted():
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the interpreter has started and waits: its start-up is outside the window
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    others, t = OtherCpu(), time.perf_counter()
    child.stdin.write("go\n")
    child.stdin.flush()
    child.wait()
    busy, elapsed = others.cores(), time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spun = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert spun >= 0.45  # what the child spent after "go" (0.5 s of CPU; it started before the window)
    # every other process on the machine only adds to the count; 10 ms ticks (CLK_TCK 100) round it
    assert busy * elapsed >= spun - 0.05, (busy, elapsed, spun)
    assert busy <= os.cpu_count() + 0.05  # never more cores than the machine has
