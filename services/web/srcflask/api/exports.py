"""The training data exports (services/training_exports.py) for admins' scripts: the same
streamed JSON Lines as the admin's Exports page gives, one record a line, each of the JSON
Schema in srcflask/services/export_schemas/ (the Exports page shows it)."""
from ..services import training_exports
from . import bp
from .auth import roles
from .errors import ApiError

KIND = {"in": "path", "name": "kind", "required": True,
        "schema": {"type": "string", "enum": list(training_exports.KINDS)},
        "description": "supervised (prompt, completion), preferences (prompt, chosen, rejected) or labels "
                       "(prompt, completion, label)."}


@bp.get("/exports/<string:kind>", parameters=[KIND])
@bp.response(200, content_type="application/jsonl",
             description="JSON Lines, streamed as an attachment: one record a line, each naming the model, the "
                         "revision and the review it came from. The admin's Exports page gives each record's JSON "
                         "Schema.")
# The body is a stream of records, not one JSON value: named, not described by a schema here.
@bp.doc(responses={200: {"content": {"application/jsonl": {"schema": {"type": "string"}}}}})
@roles("admin")
def export_training_data(kind):
    """The editors' reviews as training data: supervised pairs (the correction where there is
    one), preference pairs (from blind comparisons and from corrections) or binary labels
    (approve / reject). 404 for another kind."""
    if kind not in training_exports.KINDS:
        raise ApiError(404, "not_found", f"There is no {kind!r} export: ask for one of "
                                         f"{', '.join(training_exports.KINDS)}.")
    return training_exports.attachment(kind)
