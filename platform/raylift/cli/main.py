"""``raylift``: the root command group."""

from __future__ import annotations

import logging

import click

from raylift.cli.cluster import cluster
from raylift.cli.common import State
from raylift.cli.data import data
from raylift.cli.eval import eval_command
from raylift.cli.jobs import jobs, submit
from raylift.cli.monitor import monitor
from raylift.cli.report import report
from raylift.cli.runs import runs
from raylift.cli.serve import serve
from raylift.cli.tokenizer import tokenizer
from raylift.cli.train import train, validate
from raylift.cli.tune import tune
from raylift.ops.auth import use_token_mode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show Ray's own logs.")
@click.version_option(package_name="raylift")
def cli(debug: bool, verbose: bool) -> None:
    """Train, tune and serve PyTorch models on a Ray cluster."""
    State.debug = debug
    State.verbose = verbose
    # Ray reads RAY_AUTH_MODE once, when first imported: token auth unless the
    # user said otherwise. Ray's own INFO chatter (packaging, uploads) only with -v.
    use_token_mode()
    if verbose:
        logging.getLogger("raylift").setLevel(logging.DEBUG)


cli.add_command(train)
cli.add_command(validate)
cli.add_command(runs)
cli.add_command(cluster)
cli.add_command(submit)
cli.add_command(jobs)
cli.add_command(tune)
cli.add_command(report)
cli.add_command(serve)
cli.add_command(monitor)
cli.add_command(tokenizer)
cli.add_command(data)
cli.add_command(eval_command)


def main() -> None:
    cli(prog_name="raylift")


if __name__ == "__main__":
    main()
