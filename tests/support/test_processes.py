"""The test harness's own guarantee: a hung child (and the workers it started) fails its test and is killed."""

import os
import sys
import time

import pytest

import processes

HANG = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
HANG += "print(c.pid, flush=True); print('waiting for my worker', file=sys.stderr, flush=True); c.wait()"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_hung_launcher_fails_its_test_and_its_workers_die(tmp_path):
    started = time.monotonic()
    out = tmp_path / "out.txt"
    with open(out, "w") as f, pytest.raises(pytest.fail.Exception) as failed:
        processes.wait(processes.start([sys.executable, "-c", HANG], stdout=f, stderr=f), timeout=3, output="tail")
    assert time.monotonic() - started < 30
    worker = int(out.read_text().split()[0])
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:  # the worker, a grandchild, died with the group
        time.sleep(0.1)
    assert not alive(worker)
    assert "did not finish within 3 s" in str(failed.value) and "time.sleep(600)" in str(failed.value)


def test_run_reports_the_output_of_a_hung_child():
    with pytest.raises(pytest.fail.Exception, match="waiting for my worker"):
        processes.run([sys.executable, "-c", HANG], timeout=3)
    assert processes.run([sys.executable, "-c", "print('ok')"]).stdout == "ok\n"
