"""`flask create-admin`, run the way an operator (or the quick-start script) runs it."""
import re

import pytest

from .auth_admin_helpers import user_by_email, user_count
from .factories import DEFAULT_PASSWORD, make_user

NO_ENV = {"ADMIN_EMAIL": None, "ADMIN_NAME": None, "ADMIN_PASSWORD": None}


def create_admin(app, *args, input=None, **env):
    return app.test_cli_runner().invoke(args=["create-admin", *args], input=input, env={**NO_ENV, **env})


def test_create_admin_from_the_environment(app):
    result = create_admin(app, ADMIN_EMAIL="Root@Example.ORG", ADMIN_NAME="Root", ADMIN_PASSWORD=DEFAULT_PASSWORD)
    assert result.exit_code == 0, result.output
    assert "Created the approved admin root@example.org." in result.output
    assert DEFAULT_PASSWORD not in result.output
    admin = user_by_email(app, "root@example.org")
    assert (admin.name, admin.role, admin.status, admin.email) == ("Root", "admin", "approved", "root@example.org")
    assert admin.check_password(DEFAULT_PASSWORD)


def test_create_admin_prompts_for_what_is_missing(app):
    result = create_admin(app, input=f"root@example.org\nRoot Admin\n{DEFAULT_PASSWORD}\n{DEFAULT_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Email:" in result.output and "Name:" in result.output and "Repeat for confirmation:" in result.output
    assert DEFAULT_PASSWORD not in result.output  # the prompt hides it
    assert user_by_email(app, "root@example.org").check_password(DEFAULT_PASSWORD)


def test_options_win_over_the_environment(app):
    result = create_admin(app, "--email", "opt@example.org", "--name", "Opt",
                          ADMIN_EMAIL="env@example.org", ADMIN_NAME="Env", ADMIN_PASSWORD=DEFAULT_PASSWORD)
    assert result.exit_code == 0, result.output
    assert user_by_email(app, "opt@example.org").name == "Opt"
    assert user_by_email(app, "env@example.org") is None


def test_there_is_no_default_password(app):
    """Without ADMIN_PASSWORD or --generate-password, the password is asked for; with no
    answer the command stops and nothing is created."""
    result = create_admin(app, "--email", "root@example.org", "--name", "Root", input="")
    assert result.exit_code == 1
    assert user_count(app) == 0


def test_generate_password_prints_it_exactly_once(app):
    """The quick-start script's call."""
    result = create_admin(app, "--if-none-exists", "--generate-password", "--email", "admin@localhost",
                          "--name", "Admin")
    assert result.exit_code == 0, result.output
    passwords = re.findall(r"store it now\): (\S+)", result.output)
    assert len(passwords) == 1
    password = passwords[0]
    assert result.output.count(password) == 1
    assert len(password) >= 20
    admin = user_by_email(app, "admin@localhost")
    assert (admin.role, admin.status) == ("admin", "approved")
    assert admin.check_password(password)

    again = create_admin(app, "--generate-password", "--email", "second@example.org", "--name", "Second")
    assert re.findall(r"store it now\): (\S+)", again.output) != passwords


def test_if_none_exists_does_nothing_when_an_approved_admin_exists(app, app_context):
    make_user(role="admin", email="first@example.org")
    result = create_admin(app, "--if-none-exists", "--generate-password", "--email", "admin@localhost",
                          "--name", "Admin")
    assert result.exit_code == 0
    assert "An approved admin already exists; nothing to do." in result.output
    assert "store it now" not in result.output
    assert user_count(app) == 1


def test_if_none_exists_creates_one_when_the_only_admin_is_not_approved(app, app_context):
    make_user(role="admin", status="suspended", email="gone@example.org")
    result = create_admin(app, "--if-none-exists", "--email", "new@example.org", "--name", "New",
                          ADMIN_PASSWORD=DEFAULT_PASSWORD)
    assert result.exit_code == 0, result.output
    assert user_by_email(app, "new@example.org").status == "approved"


@pytest.mark.parametrize(
    "email, password, message",
    [
        ("root@example.org", "password1234", "Password: This password is too easy to guess."),
        ("root@example.org", "short", "Password: Use at least 10 characters."),
        ("not an email", DEFAULT_PASSWORD, "Email: Enter a valid email address."),
        ("root@invalid", DEFAULT_PASSWORD, "Email: Enter a valid email address."),
        ("TAKEN@example.org", DEFAULT_PASSWORD, "Email: An account with this email already exists."),
    ],
)
def test_refusals_exit_1_with_a_clear_message(app, app_context, email, password, message):
    make_user(email="taken@example.org")
    result = create_admin(app, "--email", email, "--name", "Root", ADMIN_PASSWORD=password)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert user_count(app) == 1
