"""Page latency under gunicorn settings, with the server's writer idle and busy.

Runs the production processes on loopback exactly as tests/test_production.py does
(entrypoint, gunicorn with gunicorn.conf.py, nginx with services/nginx/nginx.conf over
TLS), with the tiny GPT-2 of tests/tinygpt2.py as the writer's model, and measures a
logged-in sponsor's document page with wrk (Debian's package: apt-get install wrk):

- idle: the queue is empty, the writer polls;
- busy: thousands of autodocs are queued, so the writer (the process gunicorn's master runs
  beside the workers) generates all the time.

for each (workers, threads) given. The tiny model makes each generate call short, so the
writer's load here is a steady mix of TensorFlow kernels (both cores, no GIL) and Python
(queue claims and writes, holding the GIL); with the real GPT-2 each call runs for many
seconds in TensorFlow's kernels. Usage (from services/web):

    .venv/bin/python bench/gunicorn_settings.py [--seconds 10] [--configs 1x4,1x8,2x4,2x8]
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

WEB_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(WEB_ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.helpers import CSRF_META  # noqa: E402
from tests.prodstack import (free_port, gunicorn, nginx, nginx_site, production_env, run_entrypoint,  # noqa: E402
                             self_signed_certificate, throwaway_database)
from tests.tinygpt2 import build_tiny_gpt2  # noqa: E402

QUEUED_FOR_BUSY = 20_000  # far more than the writer can finish during one measurement


def demo_login(base, ca, seeded):
    """Log the first demo sponsor in through the form; (session cookie, a document path)."""
    password = re.search(r"^Password for every demo account[^:]*: (\S+)$", seeded, re.MULTILINE).group(1)
    email = re.search(r"^\s+sponsor\s+(\S+@\S+)", seeded, re.MULTILINE).group(1)
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = ca
    token = CSRF_META.search(browser.get(base + "/auth/login").text).group(1)
    response = browser.post(base + "/auth/login", data={"email": email, "password": password, "csrf_token": token},
                            headers={"Referer": base + "/auth/login"}, allow_redirects=False)
    assert response.status_code == 302, response.status_code
    listing = browser.get(base + "/sponsor/documents").text
    document = re.search(r'href="(/sponsor/documents/\d+)"', listing).group(1)
    return browser.cookies.get("session"), document


def wrk(url, cookie, connections, seconds):
    """wrk's latency percentiles (ms) and requests per second for `url`."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Cookie: session={cookie}", url],
        capture_output=True, text=True, check=True)
    out = result.stdout

    def ms(label):
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": ms("50%"), "p90": ms("90%"), "p99": ms("99%"),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "errors": int(errors.group(1)) if errors else 0}


def set_queue(database_url, busy, measured_path):
    """Busy: queue QUEUED_FOR_BUSY new autodocs (on other documents: the measured page
    must stay the same size); idle: finish every waiting one by hand."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        if busy:
            conn.execute(text(
                "INSERT INTO autodocs (revision_id, generation, status) "
                "SELECT r.id, g, 'queued' FROM revisions r, (SELECT max(generation) AS top FROM autodocs) m, "
                "generate_series(m.top + 1, m.top + :n) g WHERE r.document_id <> :measured"),
                {"n": QUEUED_FOR_BUSY // 10, "measured": int(measured_path.rsplit("/", 1)[1])})
        else:
            conn.execute(text("UPDATE autodocs SET status = 'done', attempt_token = NULL "
                              "WHERE status IN ('queued', 'running')"))
    engine.dispose()


def written(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM autodocs WHERE continuation IS NOT NULL")).scalar_one()
    engine.dispose()
    return count


def wait_for_writer(base, ca, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(base + "/readyz", verify=ca).json()["writer"]["state"]
        if state == "loaded":
            return
        time.sleep(1)
    raise RuntimeError("the writer did not load its model")


def measure(config, database_url, model_dir, workdir, seeded, seconds):
    workers, threads = config
    env = production_env(database_url, model_dir, GUNICORN_WORKERS=workers, GUNICORN_THREADS=threads)
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    rows = []
    with ExitStack() as down:
        down.enter_context(gunicorn(env, web_port, workdir / f"gunicorn-{workers}x{threads}.log"))
        cert, key = self_signed_certificate(workdir)
        down.enter_context(nginx(nginx_site(web_port, http_port, https_port, cert, key)))
        base = f"https://127.0.0.1:{https_port}"
        wait_for_writer(base, str(cert))
        cookie, document = demo_login(base, str(cert), seeded)
        for busy in (False, True):
            set_queue(database_url, busy, document)
            time.sleep(3)  # the writer claims its first batches
            before, started = written(database_url), time.monotonic()
            for connections in (1, 8):
                result = wrk(base + document, cookie, connections, seconds)
                rows.append((workers, threads, "busy" if busy else "idle", connections, result))
            rate = (written(database_url) - before) / (time.monotonic() - started)
            rows[-1][-1]["autodocs_per_s"] = rows[-2][-1]["autodocs_per_s"] = rate
        set_queue(database_url, False, document)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--configs", default="1x4,1x8,2x4,2x8", help="workers x threads, comma-separated")
    args = parser.parse_args()
    configs = [tuple(int(n) for n in item.split("x")) for item in args.configs.split(",")]

    with tempfile.TemporaryDirectory(prefix="srcflask-bench-") as folder, throwaway_database("srcflask_bench") as url:
        workdir = Path(folder)
        model_dir = build_tiny_gpt2(workdir / "tiny-gpt2")
        seeded = run_entrypoint(production_env(url, model_dir), "flask", "seed-demo", "--in-production")
        rows = []
        for config in configs:
            rows += measure(config, url, model_dir, workdir, seeded, args.seconds)
            print(f"measured {config[0]} worker(s) x {config[1]} threads", file=sys.stderr)

    print("| workers × threads | writer | connections | p50 ms | p90 ms | p99 ms | req/s | autodocs/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for workers, threads, writer, connections, r in rows:
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        print(f"| {workers} × {threads} | {writer} | {connections} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} "
              f"| {r['rps']:.0f}{errors} | {r['autodocs_per_s']:.1f} |")


if __name__ == "__main__":
    main()
