"""Blind comparisons: an editor reads a revision's autodoc and its shadow draft side by
side, without knowing which model wrote which, and says which reads better.

A pair is an autodoc that is written, with the model that wrote it (the baseline), and its
newest shadow draft (services/shadow_drafts.py) that is written by a model still a
candidate and other than the baseline. The review page of the document's editor shows the
two texts as "Draft A" and "Draft B" in a random order, and nothing else that tells them
apart: the page gets only the two texts and a token to post back (`BlindPair`), never a
model, an id of the draft or the order.

The token is signed (itsdangerous, SECRET_KEY, a salt of its own: signed_links.SignedLinks)
but not encrypted, so whoever decodes it may read it: it carries the shadow draft's id,
the autodoc's and the editor's — none of them says which draft is whose — and a random
nonce. The order is a bit derived from the nonce with a keyed hash (HMAC with SECRET_KEY),
so only the server can tell from the token which draft the candidate's is. A token that
was changed, or is older than BLIND_CHOICE_MAX_AGE_SECONDS, is refused (400); the page
then offers the pair again, in a new random order.

A choice is stored once per editor and pair (Comparison, unique on the draft and the
editor): choices on one pair take turns on the draft's row lock, so the second post of
the same choice — or of another one — finds the first and answers with it; nothing is
counted twice. Two editors (the document was given to another editor in between) count
once each. A pair whose candidate was promoted or retired meanwhile is closed (409): the
model row is read under a share lock, so a promotion and a choice also take turns.
After the choice the page shows which draft was which (`Revealed`).
Functions here flush, never commit: the caller commits once.
"""
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Autodoc, Comparison, Retention, Revision, ShadowDraft, WriterModel
from . import audit
from .signed_links import LinkRefused, SignedLinks

# What the page's buttons post: "A reads better", "B reads better", "About the same".
CHOICES = ("first", "second", "same")
TOKENS = SignedLinks(
    "srcflask.blind-comparison", "BLIND_CHOICE_MAX_AGE_SECONDS",
    invalid="This comparison form was changed or is not one of ours: nothing was recorded. Here is the pair again.",
    expired="This comparison form is too old: nothing was recorded. Here is the pair again; choose once more.",
)


class ComparisonError(Exception):
    """A choice the rules refuse; its message is for the editor, `status` is the page's."""

    status = 400


class InvalidChoice(ComparisonError):
    """Neither A, B nor "about the same"."""


class BadToken(ComparisonError):
    """A token changed, made up, or too old."""


class NotYourPair(ComparisonError):
    """The pair is not this editor's to judge: answered as a page that does not exist."""

    status = 404


class PairClosed(ComparisonError):
    """The candidate is no longer a candidate: its drafts are compared no more."""

    status = 409


@dataclass(frozen=True)
class BlindPair:
    """What the page may know before the choice: the words both drafts continue, the two
    texts as Draft A and Draft B, and the token to post back."""

    blind = True
    prompt: str
    texts: tuple[str, str]
    token: str


@dataclass(frozen=True)
class RevealedDraft:
    text: str
    model_label: str
    candidate: bool  # False: the autodoc itself, by the model that was active


@dataclass(frozen=True)
class Revealed:
    """An editor's recorded choice, with the drafts in the order they were shown."""

    blind = False
    prompt: str
    drafts: tuple[RevealedDraft, RevealedDraft]
    choice: str  # one of CHOICES, as the editor saw it


def _candidate_first(nonce):
    """The order a token's nonce stands for: a bit of a keyed hash, so the nonce alone tells nothing."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.digest(key, b"blind-comparison-order:" + nonce.encode(), hashlib.sha256)[0] & 1 == 1


def _pair_drafts():
    """Shadow drafts that stand in a pair with their autodoc: written, by a model still a
    candidate and not the one that wrote the autodoc, which is written too."""
    return (
        select(ShadowDraft)
        .join(Autodoc, Autodoc.id == ShadowDraft.autodoc_id)
        .join(WriterModel, WriterModel.id == ShadowDraft.model_id)
        .where(ShadowDraft.status == "done", ShadowDraft.continuation.is_not(None),
               Autodoc.status == "done", Autodoc.model_id.is_not(None), ShadowDraft.model_id != Autodoc.model_id,
               WriterModel.state == "candidate")
    )


def _newest_pair_draft(autodoc):
    """The shadow draft the autodoc is compared with: its newest one of _pair_drafts, or None."""
    return db.session.scalar(
        _pair_drafts().where(ShadowDraft.autodoc_id == autodoc.id).order_by(ShadowDraft.id.desc()).limit(1))


def withheld_texts(autodocs, reader):
    """The ids of those of `autodocs` whose text `reader` may not read yet: each is one of
    the two drafts of a pair waiting for the reader's choice (blind_pair offers it on the
    review page). Every page and answer that shows an editor an autodoc's text asks this
    first: read on the document page, the live status or the API, the text would tell which
    draft is the autodoc. Sponsors and admins never compare: nothing is withheld from them,
    and no query is made. One query for any number of autodocs."""
    ids = [autodoc.id for autodoc in autodocs if autodoc.status == "done"]
    if reader is None or reader.role != "editor" or not ids:
        return frozenset()
    newest = (
        _pair_drafts().with_only_columns(ShadowDraft.autodoc_id, func.max(ShadowDraft.id).label("draft_id"))
        .join(Revision, Revision.id == Autodoc.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(ShadowDraft.autodoc_id.in_(ids), Retention.editor_id == reader.id)
        .group_by(ShadowDraft.autodoc_id)
        .subquery()
    )
    chosen = select(Comparison.id).where(Comparison.shadow_draft_id == newest.c.draft_id,
                                         Comparison.editor_id == reader.id)
    return frozenset(db.session.scalars(select(newest.c.autodoc_id).where(~chosen.exists())))


def _choice_of(editor, shadow_draft_id):
    return db.session.scalar(select(Comparison).where(Comparison.shadow_draft_id == shadow_draft_id,
                                                      Comparison.editor_id == editor.id))


def _is_the_editor(autodoc, editor):
    return autodoc.revision.document.retention.editor_id == editor.id


def blind_pair(autodoc, editor):
    """The pair `editor` is asked to judge on `autodoc`'s review page, in a new random
    order, or None: no pair (no shadow draft written, its model no longer a candidate),
    not the document's editor, or this editor already chose on it (`revealed` then)."""
    draft = _newest_pair_draft(autodoc)
    if draft is None or not _is_the_editor(autodoc, editor) or _choice_of(editor, draft.id) is not None:
        return None
    nonce = secrets.token_urlsafe(12)
    candidate_first = _candidate_first(nonce)
    texts = (draft.continuation, autodoc.continuation)
    return BlindPair(prompt=autodoc.prompt or "", texts=texts if candidate_first else texts[::-1],
                     token=TOKENS.token([draft.id, autodoc.id, editor.id, nonce]))


def revealed(autodoc, editor):
    """`editor`'s newest recorded choice on `autodoc`, with the models named; None if none."""
    comparison = db.session.scalar(
        select(Comparison).where(Comparison.autodoc_id == autodoc.id, Comparison.editor_id == editor.id)
        .options(joinedload(Comparison.shadow_draft), joinedload(Comparison.candidate_model),
                 joinedload(Comparison.baseline_model))
        .order_by(Comparison.id.desc()).limit(1)
    )
    if comparison is None:
        return None
    drafts = (RevealedDraft(comparison.shadow_draft.continuation, comparison.candidate_model.label, True),
              RevealedDraft(autodoc.continuation, comparison.baseline_model.label, False))
    first = comparison.candidate_shown_first
    if comparison.winner == "tie":
        choice = "same"
    else:
        choice = "first" if (comparison.winner == "candidate") == first else "second"
    return Revealed(prompt=autodoc.prompt or "", drafts=drafts if first else drafts[::-1], choice=choice)


def for_review(autodoc, editor):
    """What `editor`'s review page of `autodoc` shows: the pair to judge blind, else the
    choice they made, else None (three queries at most)."""
    return blind_pair(autodoc, editor) or revealed(autodoc, editor)


def choose(editor, autodoc, token, choice):
    """Record `editor`'s `choice` ("first", "second" or "same") on the pair a review page
    of `autodoc` showed them with `token`. Returns (comparison, recorded): recorded is
    False when they had already chosen on this pair — the first choice stands, and is the
    one returned. Raises InvalidChoice or BadToken (400), NotYourPair (404) or PairClosed
    (409) before writing anything; audited."""
    if choice not in CHOICES:
        raise InvalidChoice("Choose Draft A, Draft B or “About the same”.")
    try:
        draft_id, autodoc_id, editor_id, nonce = TOKENS.payload(token or "")
    except LinkRefused as refused:
        raise BadToken(str(refused)) from None
    if (autodoc_id, editor_id) != (autodoc.id, editor.id) or not _is_the_editor(autodoc, editor):
        raise NotYourPair("This comparison is not yours to judge.")
    # Choices on one pair take turns (NO KEY UPDATE: the comparison's foreign key check
    # does not wait for it); the second finds the first's row.
    draft = db.session.scalar(
        select(ShadowDraft).where(ShadowDraft.id == draft_id, ShadowDraft.autodoc_id == autodoc.id)
        .with_for_update(key_share=True))
    if draft is None:
        raise NotYourPair("This comparison no longer exists.")
    earlier = _choice_of(editor, draft.id)
    if earlier is not None:
        return earlier, False
    # Read under a share lock: a promotion or a retirement of the candidate waits for this
    # choice's commit, or this choice sees its outcome.
    candidate_state = db.session.scalar(select(WriterModel.state).where(WriterModel.id == draft.model_id)
                                        .with_for_update(read=True))
    if candidate_state != "candidate":
        raise PairClosed("This comparison is closed: the model that wrote one of the drafts was promoted or "
                         "retired meanwhile, so there is nothing left to compare. Nothing was recorded.")
    candidate_first = _candidate_first(nonce)
    if choice == "same":
        winner = "tie"
    else:
        winner = "candidate" if (choice == "first") == candidate_first else "baseline"
    comparison = Comparison(autodoc_id=autodoc.id, shadow_draft_id=draft.id, revision_id=autodoc.revision_id,
                            editor_id=editor.id, candidate_model_id=draft.model_id, baseline_model_id=autodoc.model_id,
                            winner=winner, candidate_shown_first=candidate_first)
    db.session.add(comparison)
    db.session.flush()
    audit.record(editor, "comparison.choose", "autodoc", autodoc.id, comparison_id=comparison.id,
                 shadow_draft_id=draft.id, revision_id=autodoc.revision_id, candidate_model_id=draft.model_id,
                 baseline_model_id=autodoc.model_id, winner=winner, candidate_shown_first=candidate_first)
    return comparison, True
