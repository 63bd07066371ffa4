"""How long the server part of a save takes, with the writer idle and with it busy.

Run from services/web: `.venv/bin/python -m bench.save_latency`. It builds the same random
GPT-2-small as bench/writer_bench.py, migrates a throwaway PostgreSQL database on
TEST_DATABASE_URL's server, logs a sponsor in through the real form, and times saves of a new
document (POST to the view, in-process: the server's part, no network) first with no writer,
then while the in-process writer runs GPT-2 beam search on a queue that never empties.
Prints a Markdown table.
"""
import statistics
import tempfile
import time
from pathlib import Path

from tests.prodstack import throwaway_database


SAVES = 40


def timed_saves(client, editor_id, label):
    durations = []
    for number in range(SAVES):
        started = time.perf_counter()
        response = client.post("/sponsor/documents/new", data={
            "title": f"{label} {number}", "editor": editor_id,
            "body": "The committee reviewed the budget and approved the plan for the next year. " * 20,
        })
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 302, response.status_code
    durations.sort()
    return {"median": statistics.median(durations), "p95": durations[int(0.95 * len(durations)) - 1],
            "max": durations[-1]}


def main():
    from flask_migrate import upgrade

    from bench.writer_bench import build
    from srcflask import create_app
    from srcflask.extensions import db
    from srcflask.models import User
    from srcflask.writer import writer_runtime

    with throwaway_database("srcflask_bench") as database_url, tempfile.TemporaryDirectory() as workdir:
        build(Path(workdir))
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WRITER_MODEL_DIR=str(Path(workdir) / "model"),
                         WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
        with app.app_context():
            upgrade()
            users = {}
            for role in ("sponsor", "editor"):
                user = User(name=role, email=f"{role}@bench.test", role=role, status="approved")
                user.set_password("bench password 123456")
                db.session.add(user)
                users[role] = user
            db.session.commit()
            editor_id = users["editor"].id
        client = app.test_client()
        client.post("/auth/login", data={"email": "sponsor@bench.test", "password": "bench password 123456"})
        idle = timed_saves(client, editor_id, "idle")
        writer_runtime.load(app.config)  # load and compile before the clock starts
        writer_runtime.start(app)
        time.sleep(3)  # the first batch of 8 (about 7 s of beam search) is being written
        busy = timed_saves(client, editor_id, "busy")
        writer_runtime.stop(timeout=120)
        with app.app_context():
            db.engine.dispose()
    print("| writer | saves | median ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for label, figures in (("idle", idle), ("busy (GPT-2-small beam search)", busy)):
        print(f"| {label} | {SAVES} | {figures['median']:.1f} | {figures['p95']:.1f} | {figures['max']:.1f} |")


if __name__ == "__main__":
    main()
