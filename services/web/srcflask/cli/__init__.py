"""Flask commands: `flask create-admin`, `flask seed-demo`, `flask writer ...`, `flask reviews recount`."""


def init_app(app):
    from .demo import seed_demo
    from .reviews import reviews
    from .users import create_admin
    from .writer import writer

    app.cli.add_command(create_admin)
    app.cli.add_command(seed_demo)
    app.cli.add_command(writer)
    app.cli.add_command(reviews)
