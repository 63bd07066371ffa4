import click
create_admin = click.Command("create-admin")
