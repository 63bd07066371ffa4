import click
seed_demo = click.Command("seed-demo")
