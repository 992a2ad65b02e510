"""gg.settings: the verbosity of the ``groundgan`` logger, its handler, evaluate's log lines."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

import groundgan as gg
from groundgan import _settings

LOGGER = logging.getLogger("groundgan")
LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
NAMES = {"error": 0, "warning": 1, "info": 2, "debug": 3}


@pytest.fixture(autouse=True)
def _restore_logging():
    """Every test leaves the settings, the logger's level and its handlers as it found them."""
    verbosity, level, handlers = gg.settings._verbosity, LOGGER.level, list(LOGGER.handlers)
    yield
    gg.settings._verbosity = verbosity
    LOGGER.setLevel(level)
    LOGGER.handlers[:] = handlers


def test_settings_is_a_top_level_name():
    assert gg.settings is _settings.settings
    assert "settings" in gg.__all__ and "settings" in dir(gg)


def test_default_is_warning():
    assert _settings.Settings().verbosity == 1
    assert "warning" in repr(_settings.Settings())


@pytest.mark.parametrize("value, expected", [*((i, i) for i in range(4)), *NAMES.items()])
def test_verbosity_sets_the_package_logger_level(value, expected):
    gg.settings.verbosity = value
    assert gg.settings.verbosity == expected
    assert LOGGER.level == LEVELS[expected]
    assert logging.getLogger("groundgan.tl._evaluate").getEffectiveLevel() == LEVELS[expected]


def test_verbosity_names_ignore_case():
    gg.settings.verbosity = "INFO"
    assert gg.settings.verbosity == 2 and LOGGER.level == logging.INFO


@pytest.mark.parametrize("value", [4, -1, "loud", "", None, 1.0, True, logging.INFO])
def test_bad_verbosity_names_the_allowed_values(value):
    gg.settings.verbosity = "info"
    with pytest.raises(ValueError, match="verbosity must be one of") as error:
        gg.settings.verbosity = value
    for allowed in ("0", "'error'", "'warning'", "'info'", "3", "'debug'"):
        assert allowed in str(error.value)
    assert gg.settings.verbosity == 2 and LOGGER.level == logging.INFO  # nothing changed


def _own_handlers() -> list[logging.Handler]:
    return [h for h in LOGGER.handlers if h.name == _settings.HANDLER_NAME]


def test_one_stderr_handler_installed_once(capsys):
    LOGGER.handlers[:] = [h for h in LOGGER.handlers if h.name != _settings.HANDLER_NAME]
    for value in ("debug", 0, "warning", 2, "info"):
        gg.settings.verbosity = value
    assert len(_own_handlers()) == 1
    handler = _own_handlers()[0]
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr  # the stderr of the moment (here: pytest's capture)
    _settings.Settings().verbosity = "info"  # a second settings object reuses the handler
    assert len(_own_handlers()) == 1

    logging.getLogger("groundgan.tl").info("an info line")
    logging.getLogger("groundgan.tl").debug("a debug line")
    captured = capsys.readouterr()
    assert captured.err == "an info line\n" and captured.out == ""


def test_override_restores_verbosity_and_level_also_on_error():
    gg.settings.verbosity = "warning"
    with pytest.raises(RuntimeError), gg.settings.override(verbosity="debug"):
        assert gg.settings.verbosity == 3 and LOGGER.level == logging.DEBUG
        raise RuntimeError
    assert gg.settings.verbosity == 1 and LOGGER.level == logging.WARNING
    with pytest.raises(ValueError, match="verbosity must be one of"):
        with gg.settings.override(verbosity="chatty"):
            pass
    assert gg.settings.verbosity == 1


# ----------------------------------------------------------------------------- evaluate
def _cells(seed: int, n: int = 40, genes: int = 12) -> np.ndarray:
    counts = np.random.default_rng(seed).poisson(3.0, size=(n, genes)).astype(float) + 1
    return counts / counts.sum(axis=1, keepdims=True) * 1e3


FAST = {
    "n_estimators": 5,
    "n_pcs": None,
    "perplexity": 5,
    "n_neighbors": 15,
    "tsne_perplexity": 5,
    "n_jobs": 1,
}


def _metric_lines(records) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name == "groundgan.tl._evaluate" and r.levelno == logging.INFO
    ]


def test_evaluate_logs_each_row_at_info(caplog):
    with caplog.at_level(logging.INFO, logger="groundgan"):
        gg.tl.evaluate(_cells(0), {"a": _cells(1)}, **FAST)
    lines = _metric_lines(caplog.records)
    assert [line.split(":")[0] for line in lines] == ["a", "control"]
    for metric in ("cosine", "euclidean", "mmd", "rf_auroc", "milisi"):
        assert f"{metric} " in lines[0]
    assert " s)" in lines[0]


def test_evaluate_is_quiet_at_warning_and_verbose_shows_the_lines(caplog, capsys):
    gg.settings.verbosity = "warning"
    gg.tl.evaluate(_cells(0), _cells(1), control=False, **FAST)
    assert not _metric_lines(caplog.records)
    assert capsys.readouterr().err == ""

    gg.tl.evaluate(_cells(0), _cells(1), control=False, verbose=True, **FAST)
    lines = _metric_lines(caplog.records)
    assert len(lines) == 1 and lines[0].startswith("simulated: cosine ")
    assert capsys.readouterr().err.startswith("simulated: cosine ")  # the package handler
    assert gg.settings.verbosity == 1 and LOGGER.level == logging.WARNING  # restored


def test_verbose_keeps_a_higher_verbosity():
    gg.settings.verbosity = "debug"
    gg.tl.evaluate(_cells(0), _cells(1), control=False, verbose=True, **FAST)
    assert gg.settings.verbosity == 3 and LOGGER.level == logging.DEBUG
