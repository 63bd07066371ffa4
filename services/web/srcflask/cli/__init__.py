"""Flask commands: `flask create-admin`, `flask users set-password`, `flask seed-demo`,
`flask writer ...`, `flask mail send`, `flask reviews recount`, `flask model ...`."""


def init_app(app):
    from .backup import backup
    from .demo import seed_demo
    from .mail import mail
    from .model import model
    from .reviews import reviews
    from .users import create_admin, users_group
    from .writer import writer

    app.cli.add_command(create_admin)
    app.cli.add_command(users_group)
    app.cli.add_command(seed_demo)
    app.cli.add_command(writer)
    app.cli.add_command(mail)
    app.cli.add_command(reviews)
    app.cli.add_command(model)
    app.cli.add_command(backup)
