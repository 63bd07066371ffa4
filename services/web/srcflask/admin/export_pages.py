"""The admin's Exports page: the editors' reviews as training data for fine-tuning tools
outside srcflask (services/training_exports.py) — what each export holds, each record's
JSON Schema, and the downloads, streamed (the same answer as GET /api/v1/exports/<kind>)."""
import json

from flask import render_template

from ..services import training_exports
from . import bp


@bp.get("/models/exports")
def exports():
    """How many records each export holds now, its schema and its download link."""
    schemas = {kind: json.dumps(training_exports.schema(kind), indent=2, ensure_ascii=False)
               for kind in training_exports.KINDS}
    return render_template("admin/models/exports.html", counts=training_exports.counts(), schemas=schemas)


@bp.get(f"/models/exports/<any({', '.join(training_exports.KINDS)}):kind>.jsonl")
def download_export(kind):
    """One export as a JSON Lines attachment, streamed from a server-side cursor."""
    return training_exports.attachment(kind)
