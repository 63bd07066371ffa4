"""`flask create-admin`: the first admin (and any later one) from the command line; and
`flask users set-password EMAIL`: an operator's new password for any account.

No password is ever built in: it comes from ADMIN_PASSWORD, a hidden prompt, or
--generate-password, which prints a random one exactly once. set-password only prompts
(twice, hidden): a password given as an argument would stay in the shell's history and be
seen by anyone listing the machine's processes.
"""
import os

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..services import accounts, users


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


@click.group("users")
def users_group():
    """Accounts, from the console."""


@users_group.command("set-password")
@click.argument("email")
@with_appcontext
def set_password(email):
    """Set the password of the account EMAIL (prompted twice, hidden), with the same rules
    as sign-up. Every session of the account ends; the audit log records it as done at the
    console."""
    user = users.user_with_email(email)
    if user is None:
        raise click.ClickException(f"No account uses the email {email.strip()}.")
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.set_password(user, password)
    except users.InvalidAccount as invalid:
        db.session.rollback()
        raise click.ClickException(f"Password: {invalid.errors['password']}")
    db.session.commit()
    click.echo(f"The password of {user.email} is set; every session of the account has ended.")
