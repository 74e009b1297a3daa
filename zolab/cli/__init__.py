"""The ``zolab`` command line (typer). Each area registers its commands from its own module:

* :mod:`.plan_cmds` — ``plan validate|upload|list|show|expand``
* :mod:`.db_cmds` — ``db upgrade|current``
* :mod:`.run_cmds` — ``run``, ``worker``, ``status``, ``cancel``, ``retry``
* :mod:`.demo_cmds` — ``demo`` (the quickstart plan end to end, tuning included)
* :mod:`.leaderboard_cmds` — ``leaderboard`` (paired statistics; ``--format markdown|latex|csv``)
* :mod:`.runone_cmds` — ``run-one``
* :mod:`.transfer_cmds` — ``export``, ``import`` (air-gapped GPU boxes)
* :mod:`.assets_cmds` — ``assets fetch|list``
* :mod:`.ui_cmds` — ``ui``
* :mod:`.tune_cmds` — ``tune-status`` (Optuna studies of a tuned plan)

Exit codes: 0 success, 1 bad input / refused, 2 internal or environment error. Errors are one
clear message, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="zolab",
    help="Turn ablation plans for zeroth-order (MeZO) fine-tuning into executed, measured and compared experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

def _show_version(value: bool) -> None:
    if value:
        from zolab import __version__

        typer.echo(f"zolab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print zolab's version and exit."),
) -> None:
    """Turn ablation plans for zeroth-order (MeZO) fine-tuning into executed, measured and compared experiments."""


_MODULES = ("plan_cmds", "db_cmds", "run_cmds", "leaderboard_cmds", "runone_cmds", "transfer_cmds", "assets_cmds",
            "ui_cmds", "tune_cmds", "demo_cmds")

for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"zolab.cli.{_name}")
    except ModuleNotFoundError as _exc:  # an area not built yet in this checkout
        if _exc.name != f"zolab.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()
