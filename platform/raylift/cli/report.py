"""``raylift report PATH``: pictures and a markdown summary of a run or a sweep."""

from __future__ import annotations

import click

from raylift.cli.common import console, handle_errors


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--out", default=None, metavar="DIR", help="Output folder (default: PATH/report).")
@handle_errors
def report(path: str, out: str | None) -> None:
    """Write PNGs and report.md for the run or sweep folder PATH."""
    from raylift.ops.report import write_report

    written = write_report(path, out)
    console.print(f"wrote {written}", highlight=False)
