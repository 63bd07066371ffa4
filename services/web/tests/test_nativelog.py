"""TensorFlow's native start-up notes are dropped as TF_CPP_MIN_LOG_LEVEL asks; nothing else is.

Run in a child process: the filter swaps the process's file descriptor 2, which pytest's own
capture also uses.
"""
import os
import subprocess
import sys

import pytest

CHILD = r"""
import os, sys, threading
from srcflask.static.src.nativelog import quiet_native_startup
print("before", file=sys.stderr, flush=True)
with quiet_native_startup():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796308153.569357    6598 port.cc:153] oneDNN custom operations are on.\n")
    os.write(2, b"W1203 14:29:13.569357 6598 cpu_feature_guard.cc:210] a warning\n")
    os.write(2, b"E1203 14:29:13.569357 6598 loader.cc:10] an error\n")
    other = threading.Thread(target=lambda: print("another thread logs", file=sys.stderr, flush=True))
    other.start(); other.join()
print("after", file=sys.stderr, flush=True)
"""


def run_child(level):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_level_2_drops_the_native_notes_and_warnings_and_keeps_errors_and_python_lines_in_order():
    assert run_child("2") == ["before", "E1203 14:29:13.569357 6598 loader.cc:10] an error",
                              "another thread logs", "after"]


def test_level_1_keeps_the_warnings():
    lines = run_child("1")
    assert "W1203 14:29:13.569357 6598 cpu_feature_guard.cc:210] a warning" in lines
    assert not any("oneDNN" in line for line in lines)


@pytest.mark.parametrize("level", [None, "0", "not a number"])
def test_without_a_level_everything_goes_through(level):
    assert len(run_child(level)) == 7
