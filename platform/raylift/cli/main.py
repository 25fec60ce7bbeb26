"""``raylift``: the root command group."""

from __future__ import annotations

import click

from raylift.cli.common import State
from raylift.cli.runs import runs
from raylift.cli.train import train, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show Ray's own logs.")
@click.version_option(package_name="raylift")
def cli(debug: bool, verbose: bool) -> None:
    """Train, tune and serve PyTorch models on a Ray cluster."""
    State.debug = debug
    State.verbose = verbose


cli.add_command(train)
cli.add_command(validate)
cli.add_command(runs)


def main() -> None:
    cli(prog_name="raylift")


if __name__ == "__main__":
    main()
