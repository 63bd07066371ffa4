"""Whether the forgot-password page takes longer for an email with an account than for one
without: the one thing its answer must not tell.

Run from services/web: `.venv/bin/python -m bench.forgot_timing`. It migrates a throwaway
PostgreSQL database on TEST_DATABASE_URL's server, creates one account, and times POSTs to
/auth/forgot (in-process: the server's part, no network), alternating an email with an
account (its link rendered and written to the outbox) and one without, so that both see the
same machine. Prints a Markdown table.
"""
import statistics
import time

from tests.prodstack import throwaway_database

ROUNDS = 300
KNOWN, UNKNOWN = "known@bench.test", "unknown@bench.test"


def summary(durations):
    durations = sorted(durations)
    return {"median": statistics.median(durations), "p95": durations[int(0.95 * len(durations)) - 1],
            "mean": statistics.fmean(durations)}


def main():
    from flask_migrate import upgrade

    from srcflask import create_app
    from srcflask.extensions import db
    from srcflask.models import User

    with throwaway_database("srcflask_bench") as database_url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=False,
                         RATELIMIT_ENABLED=False)
        with app.app_context():
            upgrade()
            user = User(name="Known", email=KNOWN, role="sponsor", status="approved")
            user.set_password("bench password 123456")
            db.session.add(user)
            db.session.commit()
        client = app.test_client()
        durations = {KNOWN: [], UNKNOWN: []}
        for number in range(ROUNDS + 20):
            for email in (KNOWN, UNKNOWN) if number % 2 else (UNKNOWN, KNOWN):
                started = time.perf_counter()
                response = client.post("/auth/forgot", data={"email": email})
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 302, response.status_code
                if number >= 20:  # the first rounds warm templates and the connection pool
                    durations[email].append(elapsed)
    print("| email | median ms | mean ms | p95 ms |")
    print("|---|---|---|---|")
    for email, label in ((KNOWN, "has an account"), (UNKNOWN, "has none")):
        figures = summary(durations[email])
        print(f"| {label} | {figures['median']:.2f} | {figures['mean']:.2f} | {figures['p95']:.2f} |")


if __name__ == "__main__":
    main()
