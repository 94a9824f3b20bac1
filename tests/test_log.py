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
