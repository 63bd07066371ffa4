"""The training data exports (services/training_exports.py): each export's exact records on
seeded reviews — approvals, rejections, requests for changes with and without a correction,
blind comparisons won, tied and lost — every record valid against its JSON Schema, streamed
from a server-side cursor, and who may download them (the Exports page and the API)."""
import datetime as dt
import json

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text, update

from srcflask.extensions import db
from srcflask.models import Comparison, ShadowDraft, Verdict
from srcflask.services import reviews, training_exports, trainingsets
from srcflask.static.data.processeddata.models import Autodoc

from .factories import make_document, make_user, write_autodocs
from .helpers import html
from .test_api import api, assert_error, make_token  # noqa: F401  (api is a fixture)
from .test_win_rate import archive, models, no_shadow_drafts, register_models  # noqa: F401  (fixtures)
from .tinygpt2 import tiny_model_dir  # noqa: F401  (fixture)

KINDS = training_exports.KINDS


def written(sponsor, editor, name, model_id, continuation=None):
    """A new document whose first autodoc `model_id` wrote: the autodoc."""
    make_document(sponsor, editor, title=name, body=f"The body of {name}, café ✓.")
    [autodoc_id] = write_autodocs(continuation if continuation is not None else f" {name} goes on.", model_id=model_id)
    # Read again: the session keeps what it loaded across commits (expire_on_commit is off).
    return db.session.get_one(Autodoc, autodoc_id, populate_existing=True)


def judge(autodoc, editor, decision, comment="", correction=None):
    """`editor`'s verdict through the service, with the correction the review form stores."""
    verdict = reviews.give_verdict(autodoc, editor, decision, comment)
    if correction is not None:
        db.session.execute(update(Verdict).where(Verdict.id == verdict.id).values(correction=correction))
    db.session.commit()
    return verdict


def shadow(autodoc, model_id, continuation, prompt=None):
    draft = ShadowDraft(autodoc_id=autodoc.id, model_id=model_id, status="done", continuation=continuation,
                        prompt=autodoc.prompt if prompt is None else prompt)
    db.session.add(draft)
    db.session.commit()
    return draft


def choose(draft, editor, winner, candidate_shown_first=True):
    autodoc = db.session.get_one(Autodoc, draft.autodoc_id)
    comparison = Comparison(autodoc_id=autodoc.id, shadow_draft_id=draft.id, revision_id=autodoc.revision_id,
                            editor_id=editor.id, candidate_model_id=draft.model_id, baseline_model_id=autodoc.model_id,
                            winner=winner, candidate_shown_first=candidate_shown_first)
    db.session.add(comparison)
    db.session.commit()
    return comparison


@pytest.fixture
def seeded(models):
    return seed(models)


def seed(models):
    """Reviews of every kind, committed: the autodocs, verdicts and comparisons by name."""
    baseline, candidate = models["baseline"], models["candidate"]
    sponsor, editor, second_editor = make_user("sponsor"), make_user("editor"), make_user("editor")
    rows = {}

    def autodoc(name, **kwargs):
        rows[name] = written(sponsor, editor, name, baseline, **kwargs)
        return rows[name]

    rows["approved_verdict"] = judge(autodoc("approved"), editor, "approve")
    rows["rejected_verdict"] = judge(autodoc("rejected"), editor, "reject", "Off topic.")
    rows["sent_back_verdict"] = judge(autodoc("sent back"), editor, "request_changes", "Shorter.",
                                      correction=" It reads shorter.")
    rows["corrected_rejection_verdict"] = judge(autodoc("corrected rejection"), editor, "reject", "Wrong.",
                                                correction=" It reads right.")
    judge(autodoc("sent back plainly"), editor, "request_changes", "Try again.")
    # Approved, then rejected: the rejection is the current verdict.
    judge(autodoc("changed mind"), editor, "approve")
    rows["changed_mind_verdict"] = judge(rows["changed mind"], editor, "reject", "On second thought, no.")
    # Left out everywhere: an archived document's reviews, texts of whitespace only.
    judge(autodoc("archived"), editor, "reject", "No.", correction=" Archived correction.")
    judge(autodoc("blank", continuation=" \n\t "), editor, "reject", "Nothing written.")
    judge(autodoc("blank correction"), editor, "request_changes", "Fill it.", correction="  \n")

    # Blind comparisons: won by the candidate (two editors), tied, lost; a pair whose drafts
    # continue different prompts, and one on the archived document, are left out.
    won = shadow(rows["approved"], candidate, " The candidate's better draft.")
    rows["won"] = choose(won, editor, "candidate")
    rows["won_again"] = choose(won, second_editor, "candidate", candidate_shown_first=False)
    choose(shadow(rows["rejected"], candidate, " About the same."), editor, "tie")
    rows["lost"] = choose(shadow(rows["sent back"], candidate, " The candidate's worse draft."), editor, "baseline")
    choose(shadow(rows["sent back plainly"], candidate, " Another prompt's draft.", prompt="Another prompt"),
           editor, "candidate")
    choose(shadow(rows["archived"], candidate, " Archived draft."), editor, "candidate")
    archive(rows["archived"].revision.document_id)
    return rows


def model(models, name):
    return {"id": models[name], "label": {"baseline": "tiny v1", "candidate": "tiny v2"}[name]}


def revision(autodoc):
    return {"id": autodoc.revision_id, "document_id": autodoc.revision.document_id, "version": 1}


def verdict(row):
    return {"kind": "verdict", "id": row.id, "decision": row.decision, "editor_id": row.editor_id,
            "created_at": row.created_at.isoformat()}


def comparison(row):
    return {"kind": "comparison", "id": row.id, "winner": row.winner, "editor_id": row.editor_id,
            "created_at": row.created_at.isoformat(), "shadow_draft_id": row.shadow_draft_id}


def expected(seeded, models):
    """Every export's records, written out."""
    s = seeded

    def source(autodoc, review):
        return {"revision": revision(autodoc), "review": review, "autodoc_id": autodoc.id}

    def supervised(name, completion, kind, review):
        return {"prompt": s[name].prompt, "completion": completion, "source": kind, "model": model(models, "baseline"),
                **source(s[name], verdict(s[review]))}

    def label(name, value, review):
        return {"prompt": s[name].prompt, "completion": s[name].continuation, "label": value, "source": "verdict",
                "model": model(models, "baseline"), **source(s[name], verdict(s[review]))}

    def preference(name, chosen, rejected, kind, chosen_model, rejected_model, review):
        return {"prompt": s[name].prompt, "chosen": chosen, "rejected": rejected, "source": kind,
                "chosen_model": chosen_model and model(models, chosen_model),
                "rejected_model": model(models, rejected_model), **source(s[name], review)}

    return {
        "supervised": [
            supervised("approved", " approved goes on.", "approved", "approved_verdict"),
            supervised("sent back", " It reads shorter.", "correction", "sent_back_verdict"),
            supervised("corrected rejection", " It reads right.", "correction", "corrected_rejection_verdict"),
        ],
        "preferences": [
            preference("approved", " The candidate's better draft.", " approved goes on.", "comparison",
                       "candidate", "baseline", comparison(s["won"])),
            preference("approved", " The candidate's better draft.", " approved goes on.", "comparison",
                       "candidate", "baseline", comparison(s["won_again"])),
            preference("sent back", " sent back goes on.", " The candidate's worse draft.", "comparison",
                       "baseline", "candidate", comparison(s["lost"])),
            preference("sent back", " It reads shorter.", " sent back goes on.", "correction", None, "baseline",
                       verdict(s["sent_back_verdict"])),
            preference("corrected rejection", " It reads right.", " corrected rejection goes on.", "correction",
                       None, "baseline", verdict(s["corrected_rejection_verdict"])),
        ],
        "labels": [
            label("approved", True, "approved_verdict"),
            label("rejected", False, "rejected_verdict"),
            label("corrected rejection", False, "corrected_rejection_verdict"),
            label("changed mind", False, "changed_mind_verdict"),
        ],
    }


def test_each_export_holds_exactly_its_records_each_valid_against_its_schema(seeded, models):
    wanted = expected(seeded, models)
    for kind in KINDS:
        records = list(training_exports.records(kind))
        assert records == wanted[kind], kind
        validator = Draft202012Validator(training_exports.schema(kind),
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        for record in records:
            validator.validate(record)
    assert training_exports.counts() == {kind: len(wanted[kind]) for kind in KINDS}


def test_the_schemas_are_valid_and_refuse_what_breaks_them(seeded):
    for kind in KINDS:
        schema = training_exports.schema(kind)
        Draft202012Validator.check_schema(schema)
        record = next(training_exports.records(kind))
        validator = Draft202012Validator(schema)
        for broken in ({**record, "prompt": None}, {**record, "extra": 1},
                       {key: value for key, value in record.items() if key != "review"},
                       {**record, "revision": {**record["revision"], "version": 0}}):
            assert not validator.is_valid(broken), (kind, broken)


def test_supervised_pairs_are_the_training_sets_pairs(app, seeded, models, tmp_path, monkeypatch):
    """The supervised export and a training set read the same pairs (trainingsets.pairs_select)."""
    monkeypatch.setitem(app.config, "TRAINING_MIN_TRAIN_DOCUMENTS", 1)
    monkeypatch.setitem(app.config, "TRAINING_MIN_VALIDATION_DOCUMENTS", 1)
    monkeypatch.setitem(app.config, "TRAINING_DATA_DIR", str(tmp_path / "sets"))
    training_set = trainingsets.build()
    db.session.commit()
    pairs = trainingsets.read_pairs(training_set, "train") + trainingsets.read_pairs(training_set, "validation")
    assert sorted((pair["autodoc_id"], pair["prompt"], pair["continuation"]) for pair in pairs) == [
        (record["autodoc_id"], record["prompt"], record["completion"])
        for record in training_exports.records("supervised")]
    assert training_set.corrections == 2


def test_an_export_is_read_from_a_server_side_cursor(seeded):
    """Rows come a batch at a time: while the export is read, PostgreSQL holds its cursor."""
    for kind in KINDS:
        records = training_exports.records(kind)
        next(records)
        assert db.session.scalar(text("SELECT count(*) FROM pg_cursors")) == 1, kind
        list(records)
        db.session.rollback()


# --- the Exports page and the API ------------------------------------------------------------------

def lines(response):
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def check_download(response, kind):
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Type"] == "application/jsonl; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="srcflask-{kind}-{dt.date.today().isoformat()}.jsonl"')
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def seeded_records(app, no_shadow_drafts, tiny_model_dir):  # noqa: F811
    """Seeded reviews' records as the exports give them, read in an app context of its own:
    requests must not share the test's (a request would share its session and `g`)."""
    with app.app_context():
        seed(register_models(tiny_model_dir))
        records = {kind: list(training_exports.records(kind)) for kind in KINDS}
        db.session.commit()
        return records


def test_admins_see_what_each_export_holds_and_download_it(app, seeded_records, login_as):
    admin, _ = login_as("admin")
    page = html(admin.get("/admin/models/exports"))
    for kind in KINDS:
        assert f'href="/admin/models/exports/{kind}.jsonl"' in page
        assert f"<strong class=\"export-count\">{len(seeded_records[kind])}</strong>" in page
    assert "&#34;$schema&#34;" in page or "&quot;$schema&quot;" in page  # each record's schema is shown
    assert 'href="/admin/models/exports"' in html(admin.get("/admin/models"))  # linked from the Models page

    for kind in KINDS:
        response = admin.get(f"/admin/models/exports/{kind}.jsonl")
        check_download(response, kind)
        assert lines(response) == seeded_records[kind]
    assert admin.get("/admin/models/exports/secrets.jsonl").status_code == 404


@pytest.mark.parametrize(("role", "status"), [("editor", 403), ("sponsor", 403), (None, 302)])
def test_only_admins_reach_the_exports_page(app, login_as, client, role, status):
    browser = login_as(role)[0] if role else client
    for path in ("/admin/models/exports", "/admin/models/exports/supervised.jsonl"):
        response = browser.get(path)
        assert response.status_code == status, path
        if role is None:
            assert response.headers["Location"] == f"/auth/login?next={path}"


def test_the_api_gives_admins_the_same_records(app, seeded_records, api):
    with app.app_context():
        admin, editor, sponsor = (make_token(make_user(role)) for role in ("admin", "editor", "sponsor"))
    for kind in KINDS:
        response = api("GET", f"/api/v1/exports/{kind}", admin)
        check_download(response, kind)
        assert lines(response) == seeded_records[kind]
        assert_error(api("GET", f"/api/v1/exports/{kind}", editor), 403, "forbidden")
        assert_error(api("GET", f"/api/v1/exports/{kind}", sponsor), 403, "forbidden")
        assert_error(api("GET", f"/api/v1/exports/{kind}"), 401, "unauthorized")
    assert_error(api("GET", "/api/v1/exports/secrets", admin), 404, "not_found")


def test_the_exports_are_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/exports/{kind}"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["application/jsonl"]
    (kind,) = [p for p in operation.get("parameters", []) + spec["paths"]["/api/v1/exports/{kind}"]["parameters"]
               if p["name"] == "kind"]
    assert kind["schema"]["enum"] == list(KINDS)


def test_empty_exports_are_empty_files(app, login_as):
    admin, _ = login_as("admin")
    with app.app_context():
        assert training_exports.counts() == dict.fromkeys(KINDS, 0)
    for kind in KINDS:
        response = admin.get(f"/admin/models/exports/{kind}.jsonl")
        check_download(response, kind)
        assert response.get_data() == b""
