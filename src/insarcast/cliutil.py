"""How the command line meets failures: click's usage errors, insarcast's warnings and SIGTERM, each
in the project's one-line format (``insarcast: error: ...`` / ``insarcast: warning: ...``)."""

from __future__ import annotations

import signal

import click


def usage_line(exc: click.UsageError) -> str:
    param = getattr(exc, "param", None)
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) and param is not None:
        where = f"option {param.opts[0]}" if isinstance(param, click.Option) and param.opts else \
            f"argument {param.human_readable_name}"
        return f"{where}: {exc.message}"
    return " ".join(exc.format_message().split())


def one_line_warnings(ctx: click.Context) -> None:
    """insarcast's own warnings as one line each, ``insarcast: warning: ...``, like its errors (until
    the command ends)."""
    import warnings

    from .errors import InsarcastWarning

    shown = warnings.showwarning
    if getattr(shown, "insarcast", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InsarcastWarning):
            click.echo(f"insarcast: warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show.insarcast = True
    warnings.showwarning = show
    ctx.call_on_close(lambda: setattr(warnings, "showwarning", shown))


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
