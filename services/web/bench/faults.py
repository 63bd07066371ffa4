"""Faults injected at length: writers killed and frozen, PostgreSQL restarted under load.

Run from services/web: `.venv/bin/python -m bench.faults` (options: --kills, --stops,
--restarts, --seed). The scenarios are those of tests/test_faults.py (tests/faultkit.py),
longer:

1. Writers frozen with SIGSTOP past their lease, then woken (--stops times).
2. --kills SIGKILLs of `flask writer run` processes, two kept running (each victim is
   replaced at once, as a supervisor would), while saves keep queueing jobs: most kills
   strike while the victim holds a job, a third at a random moment of its life.
3. A private PostgreSQL cluster restarted (--restarts, e.g. fast,immediate,fast,immediate)
   under the production stack (gunicorn with its in-process writer, behind nginx) while
   three browsers save through the forms and the writer works through a backlog.

Then every revision is checked (one autodoc, done, written from its own text) and every
browser's answer (a page, or a clean 503 with Retry-After). Prints a Markdown summary.
Scenarios 1 and 2 use a throwaway database on TEST_DATABASE_URL's server; 3 never touches
that server.
"""
import argparse
import datetime as dt
import os
import platform
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.writer_bench import _cpu_model, _version
from tests.faultkit import (WRITER_SETTINGS, JobFeeder, WriterPool, audit_queue, audit_saves,
                            gunicorn_processes, kill_writers, load_tokenizer, log_events, migrated_app,
                            queue_drained, queue_engine, restart_during_saves, saving_stack, stop_past_lease,
                            wait_until, writer_env)
from tests.pgserver import PostgresServer, postgres_bin_dir
from tests.prodstack import throwaway_database
from tests.tinygpt2 import build_tiny_gpt2

CONTEXT_TOKENS = WRITER_SETTINGS["WRITER_CONTEXT_TOKENS"]
INITIAL_JOBS = 100
SAVES_PER_SECOND = 1.5  # while writers are being killed: a few hundred jobs over the run
BACKLOG = 200  # queued before the restarts, so that the writer is generating when they come


def writer_faults(workdir, model_dir, cache_dir, kills, stops, rng):
    """Scenarios 1 and 2 on one database and one pool of writers; their figures."""
    from srcflask.extensions import db

    figures = {}
    with throwaway_database("srcflask_faults") as database_url:
        app, people = migrated_app(database_url)
        (sponsor_id, _), = people.sponsors
        engine = queue_engine(database_url)
        pool = WriterPool(writer_env(database_url, model_dir, cache_dir), workdir)
        feeder = JobFeeder(app, sponsor_id, people.editor_id, rng)
        try:
            frozen = [stop_past_lease(pool, engine, lambda: feeder.add(1)[0], WRITER_SETTINGS["WRITER_LEASE_SECONDS"])
                      for _ in range(stops)]
            figures["stops"] = frozen
            feeder.add(INITIAL_JOBS)
            feeder.run(SAVES_PER_SECOND)
            started = time.monotonic()
            try:
                figures["kills"] = kill_writers(pool, engine, kills, rng, replace=True, any_time_share=1 / 3)
            finally:
                feeder.stop()
            figures["kill_seconds"] = time.monotonic() - started
            started = time.monotonic()
            wait_until(lambda: queue_drained(engine), 600, "the queue drained after the kills", interval=0.2)
            figures["drain_seconds"] = time.monotonic() - started
            figures["writers_started"] = len(pool.processes)
            figures["audit"] = audit_queue(engine, load_tokenizer(model_dir), CONTEXT_TOKENS)
            figures["written"] = Counter((record["autodoc_id"], record["queued_at"])
                                         for record in pool.events("autodoc_written"))
            figures["refused"] = len(pool.events("autodoc_refused"))
        finally:
            pool.close()
            engine.dispose()
            with app.app_context():
                db.engine.dispose()
    return figures


def database_restarts(workdir, model_dir, cache_dir, modes, rng):
    """Scenario 3 on a private cluster; its figures."""
    from srcflask.extensions import db

    figures = {}
    with PostgresServer() as server:
        database_url = server.create_database("srcflask_faults")
        app, people = migrated_app(database_url, sponsors=3)
        engine = queue_engine(database_url)
        JobFeeder(app, people.sponsors[0][0], people.editor_id, rng).add(BACKLOG)
        with app.app_context():
            db.engine.dispose()
        with saving_stack(database_url, model_dir, workdir, cache_dir, people, 300) as (stack, processes, savers):
            figures["restarts"] = restart_during_saves(server, stack, engine, savers, modes)
            started = time.monotonic()
            wait_until(lambda: queue_drained(engine), 600, "the queue drained after the restarts", interval=0.2)
            figures["drain_seconds"] = time.monotonic() - started
            figures["same_processes"] = gunicorn_processes(stack) == processes
            figures["ready"] = stack.get("/readyz").status_code
            output = stack.web.output()
            figures["writer_outages"] = Counter(record["step"] for record in
                                                log_events(output, "writer_database_unavailable"))
            figures["tracebacks_in_log"] = sum("Traceback" in line for line in output.splitlines())
        figures["saves"] = audit_saves(engine, savers)
        figures["audit"] = audit_queue(engine, load_tokenizer(model_dir), CONTEXT_TOKENS)
        engine.dispose()
    return figures


def server_version():
    import subprocess

    return subprocess.run([str(postgres_bin_dir() / "postgres"), "--version"], capture_output=True,
                          text=True).stdout.split()[2]


def report(args, writers, restarts, seconds):
    stops, kills, audit = writers["stops"], writers["kills"], writers["audit"]
    landed = [kill for kill in kills if kill.orphaned]
    twice = sum(count > 1 for count in writers["written"].values())
    lines = [
        f"Command: `.venv/bin/python -m bench.faults --kills {args.kills} --stops {args.stops} "
        f"--restarts {','.join(args.restarts)} --seed {args.seed}` ({seconds / 60:.1f} min)",
        "",
        "### Writers killed (SIGKILL) and frozen (SIGSTOP)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| SIGKILLs injected | {len(kills)} ({sum(k.aim == 'mid-job' for k in kills)} aimed at a writer holding a job, "
        f"{sum(k.aim == 'any time' for k in kills)} at a random moment of its life) |",
        f"| kills that landed mid-job (the victim died holding jobs) | {len(landed)} "
        f"({sum(len(k.orphaned) for k in landed)} jobs orphaned) |",
        f"| kills that landed while the writer was starting / between jobs | "
        f"{sum(not k.was_ready for k in kills)} / {sum(k.was_ready and not k.orphaned for k in kills)} |",
        f"| writer processes started | {writers['writers_started']} |",
        f"| SIGSTOP past the lease, then SIGCONT | {len(stops)} (landed while the job was being written after "
        f"{', '.join(str(stop.tries) for stop in stops)} tries) |",
        f"| late results refused / logged `autodoc_refused` | {sum(stop.final == stop.written for stop in stops)} "
        f"/ {writers['refused']} |",
        f"| jobs (revisions) | {audit.revisions} |",
        f"| autodocs done | {audit.by_status.get('done', 0)} (of {audit.autodocs}; {audit.retried} needed more than "
        f"one attempt, at most {audit.max_attempts}) |",
        f"| duplicates (revisions with several autodocs / jobs written twice) | {len(audit.duplicates)} / {twice} |",
        f"| lost (revisions without a done autodoc) | {len(audit.missing) + len(audit.not_done)} |",
        f"| written from another revision's text | {len(audit.wrong_prompt)} |",
        f"| time to drain after the last kill | {writers['drain_seconds']:.1f} s |",
        "",
        "### PostgreSQL restarted under saves and generation",
        "",
        "| restart | jobs being written at that moment | server down (s) | first accepted save after it (s) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.mode} | {r.jobs_running} | {r.down_seconds} | {r.recovered_seconds} |" for r in restarts["restarts"]]
    saves, audit = restarts["saves"], restarts["audit"]
    statuses = Counter()
    for (_, status), count in saves.answers.items():
        statuses[status] += count
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests (by status) | {sum(statuses.values())} ({', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))}) |",
        f"| 503s seen | {saves.unavailable} |",
        f"| 500s seen | {statuses[500]} |",
        f"| answers neither a page nor a clean 503 with Retry-After | {len(saves.unexpected)} |",
        f"| saves accepted (302) / lost | {saves.accepted} / {len(saves.lost)} |",
        f"| saved although the browser was answered an error (by status) | {len(saves.unconfirmed)} "
        f"{dict(Counter(status for _, status in saves.unconfirmed))} |",
        f"| documents / revisions / autodocs done | {audit.documents} / {audit.revisions} / {audit.by_status.get('done', 0)} |",
        f"| half-written (version gaps, revisions without autodoc, duplicates) | "
        f"{len(audit.broken_documents)}, {len(audit.missing)}, {len(audit.duplicates)} |",
        f"| gunicorn master and worker unchanged; /readyz | {'yes' if restarts['same_processes'] else 'NO'}; {restarts['ready']} |",
        f"| writer's logged outages (by step) | {dict(restarts['writer_outages'])} |",
        f"| time to drain after the last restart | {restarts['drain_seconds']:.1f} s |",
    ]
    problems = writers["audit"].problems() + audit.problems()
    lines += ["", "Data problems found by the audits: " + ("; ".join(problems) if problems else "none")]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=3)
    parser.add_argument("--restarts", type=lambda value: value.split(","), default=["fast", "immediate"] * 2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="srcflask-faults-") as workdir:
        workdir = Path(workdir)
        model_dir = build_tiny_gpt2(workdir / "model")
        cache_dir = workdir / "xla-cache"
        cache_dir.mkdir()
        (workdir / "writers").mkdir()
        (workdir / "stack").mkdir()
        writers = writer_faults(workdir / "writers", model_dir, cache_dir, args.kills, args.stops, rng)
        restarts = database_restarts(workdir / "stack", model_dir, cache_dir, args.restarts, rng)
    print(f"Run on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {_cpu_model()}, {os.cpu_count()} logical "
          f"CPUs (shared with other work); Python {platform.python_version()}, PostgreSQL {server_version()}, "
          f"tensorflow-cpu {_version('tensorflow-cpu')}, transformers {_version('transformers')}, "
          f"gunicorn {_version('gunicorn')}.\n")
    print(report(args, writers, restarts, time.monotonic() - started))


if __name__ == "__main__":
    main()
