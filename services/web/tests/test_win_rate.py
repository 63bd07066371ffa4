"""The candidate's win rate in blind comparisons (services/win_rate.py): Wilson's interval on
known data, the tally of seeded comparisons, and the promotion gate's comparison rule —
off, too few comparisons, enough with a low bound, enough with a high bound — through the
service, the Models pages and the API."""
import re

import pytest
from sqlalchemy import update

from srcflask.extensions import db
from srcflask.models import Comparison, Document, Retention, ShadowDraft, TrainingSet, User, WriterModel
from srcflask.services import registry, win_rate
from srcflask.services.archive import archive_document
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_registry, make_user, write_autodocs
from .helpers import html
from .test_api import api, assert_error, make_token  # noqa: F401  (api is a fixture)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

# --- Wilson's interval -----------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    # Worked by hand from p̂ = s/n, z = 1.96: (p̂ + z²/2n ± z·√(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n).
    (0, 0, 0.0, 1.0),  # nothing known
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (8, 10, 0.4902, 0.9433),
    (5, 5, 0.5655, 1.0),  # the textbook interval would say [1, 1]
    (50, 100, 0.4038, 0.5962),
    (6.5, 10, 0.3537, 0.8631),  # 6 wins, 1 tie, 3 losses
])
def test_wilson_interval_on_known_data(successes, n, low, high):
    assert win_rate.wilson_interval(successes, n) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_the_ends_are_exact_at_zero_and_all_and_nonsense_is_refused():
    assert win_rate.wilson_interval(0, 7)[0] == 0.0
    assert win_rate.wilson_interval(7, 7)[1] == 1.0
    with pytest.raises(ValueError):
        win_rate.wilson_interval(11, 10)


def test_ties_count_as_half_a_win():
    """8 wins in 10, and 7 wins, 2 ties and a loss, are the same score; ten ties are a coin
    toss, not an empty record."""
    tied = win_rate.Tally(wins=7, ties=2, losses=1)
    assert (tied.score, tied.win_rate) == (8.0, 0.8)
    assert tied.interval == win_rate.wilson_interval(8, 10)
    assert win_rate.Tally(0, 10, 0).win_rate == 0.5
    assert win_rate.Tally(1, 10, 0).win_rate == pytest.approx(6 / 11)
    empty = win_rate.Tally(0, 0, 0)
    assert empty.as_dict() == {"comparisons": 0, "wins": 0, "ties": 0, "losses": 0, "win_rate": None,
                               "low": 0.0, "high": 1.0}


# --- seeded comparisons ----------------------------------------------------------------------------

def seed_comparisons(candidate_id, baseline_id, winners, editors=1, prefix="Compared"):
    """One document per winner in `winners`: its autodoc written by the baseline, a shadow
    draft written by the candidate, and `editors` editors' blind choices on the pair (each
    choosing `winner`; the document's editor is the first). Returns the committed Comparison
    rows, in order."""
    sponsor = make_user("sponsor")
    judges = [make_user("editor") for _ in range(editors)]
    rows = []
    for number, winner in enumerate(winners):
        make_document(sponsor, judges[0], title=f"{prefix} {number}", body=f"The body of {prefix.lower()} {number}.")
        [autodoc_id] = write_autodocs(f" The baseline's draft of {prefix.lower()} {number}.", model_id=baseline_id)
        # Read again: the session keeps what it loaded across commits (expire_on_commit is off).
        autodoc = db.session.get_one(Autodoc, autodoc_id, populate_existing=True)
        shadow = ShadowDraft(autodoc_id=autodoc_id, model_id=candidate_id, status="done", prompt=autodoc.prompt,
                             continuation=f" The candidate's draft of {prefix.lower()} {number}.")
        db.session.add(shadow)
        db.session.flush()
        for judge in judges:
            rows.append(Comparison(autodoc_id=autodoc_id, shadow_draft_id=shadow.id, revision_id=autodoc.revision_id,
                                   editor_id=judge.id, candidate_model_id=candidate_id, baseline_model_id=baseline_id,
                                   winner=winner, candidate_shown_first=number % 2 == 0))
    db.session.add_all(rows)
    db.session.commit()
    return rows


def archive(document_id):
    document = db.session.get_one(Document, document_id)
    archive_document(document, db.session.get_one(User, document.retention.sponsor_id))
    db.session.commit()


@pytest.fixture
def no_shadow_drafts(app, monkeypatch):
    """Saves queue no shadow drafts of their own: the tests make the pairs they compare."""
    monkeypatch.setitem(app.config, "SHADOW_SHARE", 0)


@pytest.fixture
def models(app_context, no_shadow_drafts, tiny_model_dir):  # noqa: F811
    return register_models(tiny_model_dir)


def register_models(model_dir):
    """Three committed models by name, from the GPT-2 folder `model_dir`: the baseline
    (tiny v1, active), the candidate (tiny v2), another one (tiny v3)."""
    baseline = registry.register_folder(model_dir, kind="seed", name="tiny")
    candidate = registry.register_folder(model_dir, kind="retrained", name="tiny", parent=baseline)
    other = registry.register_folder(model_dir, kind="retrained", name="tiny", parent=baseline)
    db.session.commit()
    return {"baseline": baseline.id, "candidate": candidate.id, "other": other.id}


def test_the_tally_counts_each_editors_choice_against_that_baseline_only(models):
    candidate, baseline, other = models["candidate"], models["baseline"], models["other"]
    assert win_rate.tally(candidate, baseline) == win_rate.Tally(0, 0, 0)

    # Two editors on each of three pairs: six comparisons (two wins, two ties, two losses).
    seed_comparisons(candidate, baseline, ["candidate", "tie", "baseline"], editors=2)
    seed_comparisons(candidate, baseline, ["candidate"] * 4, prefix="More")
    # Not counted: another candidate, the same candidate against another baseline, and a
    # win on a document its sponsor archived.
    seed_comparisons(other, baseline, ["baseline"] * 2, prefix="Other")
    seed_comparisons(candidate, other, ["baseline"], prefix="Elsewhere")
    [archived] = seed_comparisons(candidate, baseline, ["candidate"], prefix="Archived")
    archive(db.session.get_one(Autodoc, archived.autodoc_id).revision.document_id)

    tally = win_rate.tally(candidate, baseline)
    assert tally == win_rate.Tally(wins=6, ties=2, losses=2) and tally.comparisons == 10
    assert tally.win_rate == 0.7
    assert tally.interval == win_rate.wilson_interval(7, 10)
    assert win_rate.tallies(baseline, [candidate, other]) == {
        candidate: tally, other: win_rate.Tally(0, 0, 2)}

    # A restore brings the archived document's comparison back.
    db.session.execute(update(Retention).values(archived_at=None))
    db.session.commit()
    assert win_rate.tally(candidate, baseline).wins == 7


# --- the promotion gate ----------------------------------------------------------------------------

PERPLEXITY = "tiny v3's validation perplexity (9.50) beats tiny v2's (20.00) on training set #1."
GATE_CASES = {
    # case: (PROMOTION_MIN_COMPARISONS, the editors' choices, passes, the comparison rule's sentence)
    "rule off": (0, [], True, None),
    "too few": (10, ["candidate"] * 3, False,
                "Editors compared tiny v3's drafts blind with tiny v2's 3 times; the gate needs at least 10."),
    "low bound": (10, ["candidate"] * 6 + ["tie"] + ["baseline"] * 3, False,
                  "In 10 blind comparisons with tiny v2's drafts, tiny v3's won 6, tied 1 and lost 3: a win rate of "
                  "65.0% (ties count half; 95% interval 35.4% to 86.3%), whose lower end is not above 50.0%."),
    "high bound": (10, ["candidate"] * 9 + ["tie"], True,
                   "In 10 blind comparisons with tiny v2's drafts, tiny v3's won 9, tied 1 and lost 0: a win rate of "
                   "95.0% (ties count half; 95% interval 65.5% to 99.5%), whose lower end is above 50.0%."),
}


@pytest.fixture
def world(app, tmp_path, monkeypatch, no_shadow_drafts, tiny_model_dir):  # noqa: F811
    """make_registry's rows by id (v2 active, v3 a candidate), the candidate's validation
    perplexity better than the active model's, the comparison rule's threshold at 0.5."""
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "trainingsets"))
    monkeypatch.setitem(app.config, "PROMOTION_MIN_WIN_LOWER_BOUND", 0.5)
    with app.app_context():
        rows = make_registry(tiny_model_dir, make_user("admin"))
        for name, perplexity in (("candidate", 9.5), ("active", 20.0)):
            registry.record_evaluation(rows[name], rows["training_set"], 2.0, perplexity, 120)
        db.session.commit()
        return {name: row.id for name, row in rows.items()}


def gate_case(app, world, monkeypatch, case):
    minimum, winners, passes, sentence = GATE_CASES[case]
    monkeypatch.setitem(app.config, "PROMOTION_MIN_COMPARISONS", minimum)
    with app.app_context():
        seed_comparisons(world["candidate"], world["active"], winners)
    message = PERPLEXITY if sentence is None else f"{PERPLEXITY} {sentence}"
    return passes, message


def states(app, world):
    with app.app_context():
        return tuple(db.session.get(WriterModel, world[name]).state for name in ("candidate", "active"))


@pytest.mark.parametrize("case", GATE_CASES)
def test_the_gate_through_the_service(app, world, monkeypatch, case):
    passes, message = gate_case(app, world, monkeypatch, case)
    with app.app_context():
        admin = make_user("admin")
        candidate = db.session.get(WriterModel, world["candidate"])
        comparison = registry.comparison(candidate)
        assert (comparison["passes"], comparison["message"]) == (passes, message)
        tally = win_rate.Tally(*(GATE_CASES[case][1].count(w) for w in ("candidate", "tie", "baseline")))
        assert comparison["blind"] == {**tally.as_dict(), "min_comparisons": GATE_CASES[case][0],
                                       "min_lower_bound": 0.5}
        if passes:
            registry.promote(candidate.id, admin)
        else:
            with pytest.raises(registry.GateRefused) as refused:
                registry.promote(candidate.id, admin)
            assert str(refused.value) == f"{message} An admin may still promote it with an override and a written reason."
            db.session.rollback()
            # The override still works, with a reason.
            registry.promote(candidate.id, admin, override=True, reason="The editors' sample is small but clear.")
        db.session.commit()
    assert states(app, world) == ("active", "retired")


@pytest.mark.parametrize("case", GATE_CASES)
def test_the_gate_on_the_promote_page(app, world, monkeypatch, login_as, case):
    passes, message = gate_case(app, world, monkeypatch, case)
    admin, _ = login_as("admin")
    path = f"/admin/models/{world['candidate']}/promote"
    page = re.sub(r">\s+<", "><", html(admin.get(path)).replace("&#39;", "'"))
    assert message in page
    assert ("The gate lets it through." if passes else "The gate refuses it.") in page
    comparisons, wins, ties, losses = (len(GATE_CASES[case][1]), *(GATE_CASES[case][1].count(w)
                                                                   for w in ("candidate", "tie", "baseline")))
    assert (f'<td class="text-end">{comparisons}</td><td class="text-end">{wins}</td>'
            f'<td class="text-end">{ties}</td><td class="text-end">{losses}</td>') in page
    index = html(admin.get("/admin/models"))
    if comparisons:
        assert f"{comparisons} blind comparisons: {wins} won" in index
    else:
        assert "no blind comparisons yet" in index

    answer = admin.post(path, {"reason": ""})
    if passes:
        assert answer.status_code == 302 and answer.headers["Location"] == "/admin/models"
        assert states(app, world) == ("active", "retired")
    else:
        assert answer.status_code == 409
        assert message in html(answer).replace("&#39;", "'")
        assert states(app, world) == ("candidate", "active")
        overridden = admin.post(path, {"reason": "Chosen all the same.", "override": "y"})
        assert overridden.status_code == 302
        assert states(app, world) == ("active", "retired")


@pytest.mark.parametrize("case", GATE_CASES)
def test_the_gate_through_the_api(app, world, monkeypatch, api, case):
    passes, message = gate_case(app, world, monkeypatch, case)
    with app.app_context():
        token = make_token(make_user("admin"))
    model = api("GET", f"/api/v1/models/{world['candidate']}", token).get_json()
    assert (model["comparison"]["passes"], model["comparison"]["message"]) == (passes, message)
    assert model["comparison"]["blind"]["comparisons"] == len(GATE_CASES[case][1])
    assert model["comparison"]["blind"]["min_comparisons"] == GATE_CASES[case][0]

    answer = api("POST", f"/api/v1/models/{world['candidate']}/promote", token, json={})
    if passes:
        assert answer.status_code == 200
        assert (answer.get_json()["state"], answer.get_json()["comparison"]) == ("active", None)
    else:
        error = assert_error(answer, 409, "gate_refused")
        assert error["message"].startswith(message)
        assert states(app, world) == ("candidate", "active")


def test_a_candidate_editors_prefer_is_still_refused_when_its_perplexity_is_worse(app, world, monkeypatch):
    monkeypatch.setitem(app.config, "PROMOTION_MIN_COMPARISONS", 5)
    with app.app_context():
        registry.record_evaluation(db.session.get(WriterModel, world["candidate"]),
                                   db.session.get(TrainingSet, world["training_set"]), 2.0, 25.0, 120)
        db.session.commit()
        seed_comparisons(world["candidate"], world["active"], ["candidate"] * 10)
        comparison = registry.comparison(db.session.get(WriterModel, world["candidate"]))
    assert comparison["passes"] is False
    assert comparison["message"].startswith("tiny v3's validation perplexity (25.00) does not beat tiny v2's (20.00)")
    assert comparison["message"].endswith("whose lower end is above 50.0%.")
