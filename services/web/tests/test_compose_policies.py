"""Operational rules every compose file must keep, checked on what a real compose client makes
of them (`docker compose config`, as tests/test_production.py does):

- every container's log is rotated, so that no service can fill the host's disk;
- the services that hold work when stopped (gunicorn's requests, the writer's batch, the
  trainer) get at least the time their own shutdown takes before docker kills them.

The same shutdown times bound deploy/kubernetes (tests/test_kubernetes_manifests.py).
"""
import ast
import inspect
import re

import pytest

from srcflask.writer import WriterRuntime

from .prodstack import WEB_ROOT
from .test_production import compose_config, compose_folder  # noqa: F401  (fixture)

COMPOSE_SETS = {
    "development": ("docker-compose.yml",),
    "production": ("docker-compose.prod.yml",),
    "scaled": ("docker-compose.prod.yml", "docker-compose.scale.yml"),
    "backup": ("docker-compose.prod.yml", "docker-compose.backup.yml"),
}
# What a service may keep on disk in logs, all its rotated files together.
LOG_BUDGET_BYTES = 100 * 1024**2
SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def gunicorn_graceful_timeout():
    """gunicorn.conf.py's graceful_timeout, read from the file (importing it would load the
    production settings)."""
    tree = ast.parse((WEB_ROOT / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "graceful_timeout"
                                                for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("gunicorn.conf.py sets no graceful_timeout")


def writer_stop_seconds():
    """How long a stopping writer waits for each thread's batch (WriterRuntime.stop's default)."""
    return inspect.signature(WriterRuntime.stop).parameters["timeout"].default


def seconds(duration):
    """A compose (Go) duration such as '40s' or '1m30s', in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def size_bytes(size):
    match = re.fullmatch(r"(\d+)([bkmg])", str(size).lower())
    assert match, f"max-size {size!r} is not a size docker understands"
    return int(match[1]) * SIZE_UNITS[match[2]]


@pytest.mark.parametrize("name", COMPOSE_SETS)
def test_every_service_rotates_its_log(compose_folder, name):  # noqa: F811
    services = compose_config(compose_folder, *COMPOSE_SETS[name])
    for service_name, service in services.items():
        logging = service.get("logging")
        assert logging and logging["driver"] in ("json-file", "local"), f"{name}: {service_name} has no rotated log"
        options = logging["options"]
        total = size_bytes(options["max-size"]) * int(options["max-file"])
        assert 0 < total <= LOG_BUDGET_BYTES, f"{name}: {service_name} may keep {total} bytes of logs"


def test_stopping_gives_work_in_progress_its_time(compose_folder):  # noqa: F811
    production = compose_config(compose_folder, *COMPOSE_SETS["production"])
    scaled = compose_config(compose_folder, *COMPOSE_SETS["scaled"])
    graceful = gunicorn_graceful_timeout()
    writer_stop = writer_stop_seconds()
    assert graceful > 10 and writer_stop > 10, "compose's default 10 s would already do; revisit these rules"
    # Production's web runs gunicorn and, in the same process, the writer.
    for service in (production["web"], scaled["web"]):
        assert seconds(service["stop_grace_period"]) > max(graceful, writer_stop)
    assert seconds(scaled["writer"]["stop_grace_period"]) > writer_stop
    # The trainer stops between runs at once; its grace is the writer's (a run being trained
    # is lost either way), never compose's 10 s default.
    assert seconds(production["trainer"]["stop_grace_period"]) > writer_stop


def test_durations_and_sizes_read_as_docker_reads_them():
    assert seconds("40s") == 40 and seconds("1m30s") == 90 and seconds("500ms") == 0.5
    assert size_bytes("10m") == 10 * 1024**2 and size_bytes("512k") == 512 * 1024
    with pytest.raises(AssertionError):
        seconds("40")  # no unit: compose refuses it, so must we
