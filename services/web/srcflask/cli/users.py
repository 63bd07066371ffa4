"""`flask create-admin`: the first admin (and any later one) from the command line.

No password is ever built in: it comes from ADMIN_PASSWORD, a hidden prompt, or
--generate-password, which prints a random one exactly once.
"""
import os

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..services import users


@click.command("create-admin")
@click.option("--email", envvar="ADMIN_EMAIL", help="The admin's email (or ADMIN_EMAIL; prompted if missing).")
@click.option("--name", envvar="ADMIN_NAME", help="The admin's name (or ADMIN_NAME; prompted if missing).")
@click.option("--if-none-exists", is_flag=True, help="Do nothing when an approved admin already exists.")
@click.option("--generate-password", is_flag=True,
              help="Generate a strong random password and print it once (instead of ADMIN_PASSWORD or a prompt).")
@with_appcontext
def create_admin(email, name, if_none_exists, generate_password):
    """Create an approved admin account. The password comes from ADMIN_PASSWORD, a hidden
    prompt, or --generate-password; it follows the same rules as sign-up."""
    if if_none_exists and users.approved_admin_exists():
        click.echo("An approved admin already exists; nothing to do.")
        return
    email = email or click.prompt("Email")
    name = (name or click.prompt("Name")).strip()
    if generate_password:
        password = users.generate_password()
    else:
        password = os.environ.get("ADMIN_PASSWORD") or click.prompt(
            "Password", hide_input=True, confirmation_prompt=True)
    try:
        user = users.create_admin(name=name, email=email, password=password)
    except users.InvalidAccount as invalid:
        db.session.rollback()
        raise click.ClickException(" ".join(f"{field.title()}: {message}" for field, message in invalid.errors.items()))
    db.session.commit()
    click.echo(f"Created the approved admin {user.email}.")
    if generate_password:
        click.echo(f"Password (shown only this once; store it now): {password}")
