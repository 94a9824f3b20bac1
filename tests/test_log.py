"""One voice: the CLI configures the insarcast logger; --quiet and --verbose on every verb."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from insarcast.cli import main
from insarcast.log import LOGGER, configure


@pytest.fixture(autouse=True)
def _restore():
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    optuna = logging.getLogger("optuna").level
    yield
    LOGGER.setLevel(level)
    LOGGER.handlers[:] = handlers
    logging.getLogger("optuna").setLevel(optuna)


def test_levels_and_third_party_loggers():
    configure()
    assert LOGGER.level == logging.INFO and logging.getLogger("optuna").level == logging.WARNING
    configure(quiet=True)
    assert LOGGER.level == logging.WARNING
    configure(quiet=True, verbose=True)
    assert LOGGER.level == logging.DEBUG and logging.getLogger("optuna").level == logging.INFO
    assert len([h for h in LOGGER.handlers if type(h).__name__ == "_Handler"]) == 1


def test_one_format_on_stderr(capsys):
    configure()
    LOGGER.warning("fewer than 10 members")
    LOGGER.info("a line")
    err = capsys.readouterr().err.splitlines()
    assert err == ["insarcast: warning: fewer than 10 members", "a line"]


def test_every_verb_takes_quiet_and_verbose():
    for name, command in main.commands.items():
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {"--quiet", "--verbose"} <= options, name
    result = CliRunner().invoke(main, ["compare", "--help"])
    assert "TUNE_DIR" in result.output and "--verbose" in result.output


def test_insarcasts_warnings_go_out_through_the_logger_one_line_each(tmp_path):
    """A command's InsarcastWarning is a warning of the insarcast logger: one line, even with --quiet."""
    import warnings

    from insarcast.fsutil import HOST_TAG

    out = tmp_path / "s"
    out.mkdir()
    stale = out / f".tmp-999999999-{HOST_TAG}-0123abcd-zones.geojson"  # a dead process's leftover
    stale.write_text("{}")
    before = warnings.showwarning
    result = CliRunner().invoke(main, ["synth", "--preset", "tiny", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"insarcast: warning: removed {stale}, left by an interrupted run\n"
    assert not stale.exists()
    assert warnings.showwarning is before                              # put back when the command ends


def test_other_warnings_are_shown_as_python_shows_them(capsys):
    import warnings

    from insarcast.errors import InsarcastWarning
    from insarcast.log import capture_warnings

    configure()
    seen = []
    before = warnings.showwarning
    warnings.showwarning = lambda message, category, *args, **kwargs: seen.append((str(message), category))
    try:
        restore = capture_warnings()
        assert capture_warnings()() is None                            # installed once
        warnings.showwarning("ours", InsarcastWarning, "f.py", 1)
        warnings.showwarning("theirs", DeprecationWarning, "f.py", 1)
        restore()
    finally:
        warnings.showwarning = before
    assert capsys.readouterr().err == "insarcast: warning: ours\n"
    assert seen == [("theirs", DeprecationWarning)]                   # handed on as Python would show it
