"""The review page's word diff stays bounded on long repetitive bodies and is always a
correct diff: its equal and deleted parts rebuild the old text, its equal and inserted
parts the new one, whether it was found in full or its time budget ran out.

Speed is measured in bench/review_diff.py; here the only clock is a generous hard cap
(10 s, in a child process so an over-long diff is killed instead of burning a core behind
the rest of the suite): a correctness bound the old difflib diff broke by minutes on
20,000 characters of repeated words, not a speed target.
"""
import multiprocessing
import re
from html import unescape
from importlib import import_module
from types import SimpleNamespace

import pytest

from srcflask.extensions import db
from srcflask.models import Document, User
from srcflask.services.documents import update_document
from srcflask.services.worddiff import word_diff

from .factories import make_document, write_autodocs
from .helpers import html
from .longtexts import BODY_CHARS, PAIRS, REPEATED, REPEATED_EDITED

HARD_CAP_SECONDS = 10


def assert_rebuilds(segments, old, new):
    assert {tag for tag, _ in segments} <= {"equal", "delete", "insert"}
    assert all(text for _, text in segments)
    assert "".join(text for tag, text in segments if tag != "insert") == old
    assert "".join(text for tag, text in segments if tag != "delete") == new


def _diff_into(connection, old, new):
    connection.send(word_diff(old, new))
    connection.close()


def test_a_long_repetitive_diff_ends_well_within_a_hard_cap():
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_diff_into, args=(sender, REPEATED, REPEATED_EDITED))
    child.start()
    sender.close()
    try:
        finished = receiver.poll(HARD_CAP_SECONDS)
        assert finished, f"word_diff of two {BODY_CHARS:,}-character repetitive texts ran past {HARD_CAP_SECONDS} s"
        segments = receiver.recv()
    finally:
        child.kill()
        child.join()
    assert_rebuilds(segments, REPEATED, REPEATED_EDITED)


@pytest.mark.parametrize("name", PAIRS)
def test_long_diffs_rebuild_both_texts(name):
    old, new = PAIRS[name]
    assert len(old) == len(new) == BODY_CHARS
    assert_rebuilds(word_diff(old, new), old, new)
    assert_rebuilds(word_diff(new, old), new, old)


def test_ordinary_prose_gets_a_word_level_diff():
    """A handful of sentence edits in 20,000 characters stays a handful of small changes,
    not one big deletion and insertion. (Given the time: the default budget fits it with
    room to spare, but a test on a shared machine must not depend on that.)"""
    old, new = PAIRS["ordinary prose"]
    segments = word_diff(old, new, budget=HARD_CAP_SECONDS)
    changed = sum(len(text) for tag, text in segments if tag != "equal")
    assert changed < 2_000


@pytest.mark.parametrize("name", PAIRS)
def test_a_diff_whose_budget_runs_out_is_still_correct(name, monkeypatch):
    """The budget is the library's deadline: a clock that has passed it at the first look
    makes every comparison give up at once, and what comes back still rebuilds both texts
    (coarser: the repeated word's hundred small changes become fewer, larger ones)."""
    old, new = PAIRS[name]
    clock = iter([0.0])
    monkeypatch.setattr(import_module("diff_match_patch.diff_match_patch"), "time",
                        SimpleNamespace(time=lambda: next(clock, 1e9)))
    segments = word_diff(old, new)
    assert_rebuilds(segments, old, new)
    if name == "repeated word":
        assert sum(tag == "insert" for tag, _ in segments) < 50


def test_the_review_page_diffs_long_repetitive_bodies(app, login_as):
    """An editor's review page for an autodoc whose revision and previous revision are the
    repeated-word bodies: the page answers, and its body diff rebuilds both versions."""
    browser, editor = login_as("editor")
    _, sponsor = login_as("sponsor")
    with app.app_context():
        document = make_document(db.session.get_one(User, sponsor.id), db.session.get_one(User, editor.id),
                                 title="Minutes", body=REPEATED)
        document_id = document.id
        write_autodocs("and so on.")
        document = db.session.get_one(Document, document_id)
        update_document(document, document.version, document.title, REPEATED_EDITED,
                        db.session.get_one(User, sponsor.id))
        db.session.commit()
        (autodoc_id,) = write_autodocs("and so forth.")
    response = browser.get(f"/editor/autodocs/{autodoc_id}/review")
    assert response.status_code == 200
    body_diff = re.search(r'<div class="revision-body-diff">.*?<div class="[^"]*diff">(.*?)</div>',
                          html(response), re.S).group(1)
    old = unescape(re.sub(r"<ins>.*?</ins>", "", body_diff, flags=re.S).replace("<del>", "").replace("</del>", ""))
    new = unescape(re.sub(r"<del>.*?</del>", "", body_diff, flags=re.S).replace("<ins>", "").replace("</ins>", ""))
    assert (old, new) == (REPEATED, REPEATED_EDITED)
