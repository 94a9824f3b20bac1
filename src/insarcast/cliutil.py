"""How the command line meets failures: click's usage errors and SIGTERM, in the project's one-line
format (``insarcast: error: ...``; warnings go through the logger, :mod:`insarcast.log`); and the one
shape of a verb's main input (:func:`main_input`)."""

from __future__ import annotations

import functools
import signal
from pathlib import Path

import click


def usage_line(exc: click.UsageError) -> str:
    param = getattr(exc, "param", None)
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) and param is not None:
        where = f"option {param.opts[0]}" if isinstance(param, click.Option) and param.opts else \
            f"argument {param.human_readable_name}"
        return f"{where}: {exc.message}"
    return " ".join(exc.format_message().split())


def terminate_like_interrupt(ctx: click.Context) -> None:
    """SIGTERM cleans up as Ctrl-C does: staged outputs and scratch stores are removed on the way out
    (until the command ends)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, interrupt)
            ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    except ValueError:                                  # not the main thread
        pass


class _MainArgument(click.Argument):
    """Optional only while the deprecated option may stand in for it: the usage shows it as required."""

    def make_metavar(self, *args, **kwargs) -> str:
        return self.name.upper()


def main_input(name: str, *, old: str, **path: bool):
    """The command's main input (what the verb acts on) as its positional argument ``NAME``, the CLI's one
    shape (``insarcast VERB INPUT [--other-input ...] --out OUT``); ``path``: :class:`click.Path` settings.

    ``old``, the option it used to be (``--cube``), still works for one release: hidden from the help,
    it logs a deprecation warning through the ``insarcast`` logger. Neither given, or both: a usage error.
    """
    metavar = name.upper()
    legacy = f"{name}_deprecated"

    def decorate(command):
        @functools.wraps(command)
        def run(**kwargs):
            given, before = kwargs.get(name), kwargs.pop(legacy)
            if given is not None and before is not None:
                raise click.UsageError(f"{metavar} given twice: as the argument and as {old} (deprecated); give "
                                       "the argument only")
            if given is None and before is None:
                raise click.UsageError(f"Missing argument '{metavar}'.")
            if before is not None:
                from .log import LOGGER

                verb = click.get_current_context().info_name
                LOGGER.warning(f"option {old} is deprecated and will be removed in the next release: give "
                               f"{metavar} as the first argument, `insarcast {verb} {metavar} ...`")
                kwargs[name] = before
            return command(**kwargs)

        kind = click.Path(path_type=Path, **path)
        run = click.option(old, legacy, type=kind, hidden=True, help=f"Deprecated: {metavar} as the argument.")(run)
        return click.argument(name, required=False, type=kind, cls=_MainArgument)(run)

    return decorate
