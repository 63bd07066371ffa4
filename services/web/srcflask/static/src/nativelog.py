"""TensorFlow's native start-up notes, kept out of stderr as TF_CPP_MIN_LOG_LEVEL asks.

TensorFlow 2.21 writes some notes through absl's C++ log before that log is set up — "oneDNN
custom operations are on" (on CPUs where oneDNN is on by default) and absl's own "All log
messages before absl::InitializeLog() ..." — and those ignore TF_CPP_MIN_LOG_LEVEL, which the
app sets to 2 (logging_setup.LIBRARY_ENVIRONMENT) so that a line on stderr means something.
Nothing in Python can reach that log, so while TensorFlow starts, `quiet_native_startup` passes
the process's stderr (file descriptor 2) through a filter that drops absl-format INFO and WARNING
lines below the level TF_CPP_MIN_LOG_LEVEL keeps; every other line (Python's logging of other
threads, TensorFlow's errors) goes through unchanged, in order.
"""
import os
import re
import sys
import threading
from contextlib import contextmanager

# absl's C++ log line (before its set-up: "I0000 00:00:1796308153.569357    6598 port.cc:153] ...",
# after: "I1203 14:29:13.569357 6598 port.cc:153] ...") and its pre-init notice.
_ABSL_LINE = re.compile(rb"^([IW])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LEVELS = {b"I": 0, b"W": 1}


def _dropped(line, min_level):
    if line.startswith(_ABSL_NOTICE):
        return min_level >= 1
    match = _ABSL_LINE.match(line)
    return bool(match) and _LEVELS[match.group(1)] < min_level


@contextmanager
def quiet_native_startup():
    """Filter fd 2 as the module docstring says, for the duration of the block (TensorFlow's
    import and first use). A no-op when TF_CPP_MIN_LOG_LEVEL keeps everything (0 or unset)."""
    try:
        min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        min_level = 0
    if min_level <= 0:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _dropped(line, min_level):
                    os.write(original, line)

    # A thread drains the pipe as it fills: other threads keep logging meanwhile, and a pipe
    # nobody reads would block them once full.
    forwarder = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last write end closes: the forwarder reads to its end
        forwarder.join()
        os.close(original)
