"""How the command line meets failures: click's usage errors, Ctrl-C and SIGTERM, in the project's one-line
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that it unwinds (and cleans up) as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def terminate_like_interrupt(ctx: click.Context) -> None:
    """SIGTERM cleans up as Ctrl-C does: staged outputs and scratch stores are removed on the way out
    (until the command ends)."""
    def interrupt(signum, frame):
        raise Terminated(signum)

    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, interrupt)
            ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    except ValueError:                                  # not the main thread
        pass


ON_INTERRUPT = "insarcast.on_interrupt"
"""``ctx.meta`` key: what the user can do after an interrupt of this command (set by :func:`on_interrupt`)."""
NOTHING_WRITTEN = "nothing half-written was left (outputs appear whole or not at all); run the command again"


def on_interrupt(advice: str) -> None:
    """Say, for the running command, what to do after Ctrl-C or SIGTERM (how to resume), in place of
    :data:`NOTHING_WRITTEN`."""
    click.get_current_context().meta[ON_INTERRUPT] = advice


def interrupted(exc: KeyboardInterrupt, ctx: click.Context) -> tuple[str, int]:
    """The one line and the exit code of a command stopped by Ctrl-C (130) or SIGTERM (143): 128 + the
    signal's number, as a shell reports a process the signal ended. Call it where the interrupt is caught."""
    _forget_unhandled_interrupt()
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    return f"insarcast: error: interrupted by {name}; {ctx.meta.get(ON_INTERRUPT, NOTHING_WRITTEN)}", 128 + signum


def _forget_unhandled_interrupt() -> None:
    """Clear CPython's record of a KeyboardInterrupt that left a string ``exec`` (``run_eval_code_obj`` sets
    ``unhandled_keyboard_interrupt`` even when a caller catches it later; ``dataclasses`` and torch build code
    with such calls). Under ``python -m insarcast`` (torchrun, the tests) ``Py_RunMain`` reads it at exit and
    ends the process by SIGINT instead of our exit code 130 (about 1 run in 15 here). Every string ``exec``
    clears it first (CPython 3.11, 3.12); where it no longer does (gh-128130) the process still ends by the
    signal, which a shell reports as 130 too."""
    exec("pass", {})                                   # a constant string: resets the flag, nothing else


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
