"""`flask model dataset`: build a training set from the editors' approved autodocs.

The same service as the Models page's button (services/trainingsets.py); from the console
nobody is logged in, so the set and its audit row name no person.
"""
import click
from flask.cli import with_appcontext

from ..extensions import db
from ..services import trainingsets


@click.command("dataset")
@with_appcontext  # attached to the `model` group with add_command, which does not add it
def dataset():
    """Build an immutable training set (JSON Lines, split by document) from approved autodocs."""
    try:
        training_set = trainingsets.build()
    except trainingsets.TrainingSetError as refused:
        raise click.ClickException(str(refused)) from None
    db.session.commit()
    click.echo(f"Training set #{training_set.id}, sha256 {training_set.sha256}")
    ts = training_set
    for label, documents, pairs, tokens in (
            ("training:  ", ts.train_documents, ts.train_pairs, ts.train_tokens),
            ("validation:", ts.validation_documents, ts.validation_pairs, ts.validation_tokens)):
        click.echo(f"  {label} {documents:,} documents, {pairs:,} pairs, {tokens:,} tokens")
    click.echo(f"  verdicts {', '.join(training_set.verdicts)}; seed {training_set.seed}; "
               f"reviews up to verdict #{training_set.last_verdict_id}")
    click.echo(f"  file: {trainingsets.file_path(training_set)}")
