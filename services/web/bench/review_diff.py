"""How long the server takes to answer an editor's review page whose bodies are long.

Run from services/web: `.venv/bin/python -m bench.review_diff`. It migrates a throwaway
PostgreSQL database on TEST_DATABASE_URL's server, makes one document per text shape whose
previous and current revisions are 20,000-character bodies (each revision with a written
autodoc, as on a real review page), logs the editor in through the real form, and times GET
/editor/autodocs/<id>/review through Flask's test client (the server's part, no network):
first with the app's word diff (diff-match-patch with a time budget), then with the word
diff the app used before, difflib's SequenceMatcher over the same words, put in its place for
the run. Prints a Markdown table of p50/p95 per shape and approach, with the ratios.

The old diff takes seconds to minutes per page on repetitive text, so it is timed on fewer
requests (OLD_REQUESTS); its figures are still the same page, the same rows.
"""
import difflib
import statistics
import sys
import time
from importlib.metadata import version


from srcflask.services.worddiff import words
from tests.longtexts import PAIRS
from tests.prodstack import throwaway_database

REQUESTS = 30
# Requests for the old diff per shape: each of its repeated-word pages costs over a minute.
OLD_REQUESTS = {"ordinary prose": 30, "four words shuffled": 5, "repeated word": 1}
PASSWORD = "bench password 123456"
CHARS = 20_000


def difflib_word_diff(old, new):
    """The review page's word diff as it was: difflib over whitespace-keeping words, no autojunk."""
    a, b = words(old), words(new)
    segments = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            segments.append(("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            segments.append(("delete", "".join(a[i1:i2])))
        if j2 > j1:
            segments.append(("insert", "".join(b[j1:j2])))
    return segments


def percentile(durations, fraction):
    ordered = sorted(durations)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def timed_pages(client, autodoc_id, requests):
    durations = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(f"/editor/autodocs/{autodoc_id}/review")
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        assert 'class="revision-body-diff"' in response.get_data(as_text=True)
    return {"p50": statistics.median(durations), "p95": percentile(durations, 0.95), "n": requests}


def build_reviews():
    """One document per shape, two versions, each with a written autodoc: {shape: autodoc id}."""
    from srcflask.extensions import db
    from srcflask.models import Document, User
    from srcflask.services.documents import create_document, update_document
    from tests.factories import write_autodocs

    users = {}
    for role in ("sponsor", "editor"):
        user = User(name=role, email=f"{role}@bench.test", role=role, status="approved")
        user.set_password(PASSWORD)
        db.session.add(user)
        users[role] = user
    db.session.commit()
    review_ids = {}
    for shape, (previous, current) in PAIRS.items():
        document = create_document(users["sponsor"], users["editor"].id, shape.capitalize(), previous)
        db.session.commit()
        write_autodocs(" and the meeting ended.")
        document = db.session.get_one(Document, document.id)
        update_document(document, document.version, document.title, current, users["sponsor"])
        db.session.commit()
        (review_ids[shape],) = write_autodocs(" and the meeting ended early.")
        db.session.commit()
    return review_ids


def main():
    from flask_migrate import upgrade

    from srcflask import create_app
    from srcflask.extensions import db
    from srcflask.services import reviews

    results = {}
    with throwaway_database("srcflask_bench") as database_url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=False,
                         RATELIMIT_ENABLED=False)
        with app.app_context():
            upgrade()
            review_ids = build_reviews()
        client = app.test_client()
        response = client.post("/auth/login", data={"email": "editor@bench.test", "password": PASSWORD})
        assert response.status_code == 302, response.status_code
        new_diff = reviews.word_diff
        for shape, autodoc_id in review_ids.items():
            timed_pages(client, autodoc_id, 3)  # warm: templates compiled, connections open
            results[shape, "diff-match-patch"] = timed_pages(client, autodoc_id, REQUESTS)
            reviews.word_diff = difflib_word_diff
            try:
                results[shape, "difflib (before)"] = timed_pages(client, autodoc_id, OLD_REQUESTS[shape])
            finally:
                reviews.word_diff = new_diff
        with app.app_context():
            db.engine.dispose()

    print(f"Python {sys.version.split()[0]}, diff-match-patch {version('diff-match-patch')}, Flask {version('flask')}\n")
    print("| bodies (20,000 chars each) | diff | requests | p50 ms | p95 ms | p50 before / after | p95 before / after |")
    print("|---|---|---|---|---|---|---|")
    for shape in review_ids:
        new, old = results[shape, "diff-match-patch"], results[shape, "difflib (before)"]
        for label, figures in (("diff-match-patch", new), ("difflib (before)", old)):
            ratios = (f"{old['p50'] / new['p50']:.1f}x | {old['p95'] / new['p95']:.1f}x"
                      if label == "diff-match-patch" else " | ")
            print(f"| {shape} | {label} | {figures['n']} | {figures['p50']:.1f} | {figures['p95']:.1f} | {ratios} |")


if __name__ == "__main__":
    main()
