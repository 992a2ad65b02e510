"""``gg.settings``: package-wide settings; at present how much the ``groundgan`` logger shows."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Settings", "settings"]

#: The package logger; every module logs to a child of it (``logging.getLogger(__name__)``).
LOGGER_NAME = "groundgan"

#: Verbosity names in order: ``verbosity`` 0 is ``"error"``, 3 is ``"debug"``.
VERBOSITY_NAMES = ("error", "warning", "info", "debug")
_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
DEFAULT_VERBOSITY = 1  # "warning"
#: Name of the stderr handler the settings give the package logger.
HANDLER_NAME = "groundgan-stderr"

logger = logging.getLogger(LOGGER_NAME)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to the ``sys.stderr`` of the moment (looked up at each
    record), so that a redirected or captured stderr gets the messages too."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.setStream: the stream is always stderr
        pass


def _parse_verbosity(value: int | str) -> int:
    """``value`` (0-3 or a name of :data:`VERBOSITY_NAMES`) as an int 0-3."""
    if isinstance(value, str) and value.lower() in VERBOSITY_NAMES:
        return VERBOSITY_NAMES.index(value.lower())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(_LEVELS):
        return value
    allowed = ", ".join(f"{i} or {name!r}" for i, name in enumerate(VERBOSITY_NAMES))
    raise ValueError(f"verbosity must be one of {allowed}; got {value!r}")


class Settings:
    """Package-wide settings of groundgan: ``gg.settings``.

    ``gg.settings.verbosity`` is how much groundgan logs, as in scanpy's
    ``sc.settings.verbosity``: 0 or ``"error"``, 1 or ``"warning"`` (the default), 2 or
    ``"info"`` (e.g. each metric of :func:`groundgan.tl.evaluate` as it is computed), 3 or
    ``"debug"``. Setting it sets the level of the ``"groundgan"`` logger
    (``logging.getLogger("groundgan")``) and, the first time, gives that logger one handler
    that writes to stderr. Records still propagate to the root logger, so an application's own
    logging configuration (or pytest's ``caplog``) sees them as well.

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.settings.verbosity = "info"
    >>> gg.settings.verbosity
    2
    >>> with gg.settings.override(verbosity="error"):
    ...     pass  # only errors are shown here
    >>> gg.settings.verbosity = "warning"
    """

    def __init__(self) -> None:
        self._verbosity = DEFAULT_VERBOSITY

    @property
    def verbosity(self) -> int:
        """How much groundgan logs: 0 (errors), 1 (warnings, the default), 2 (info), 3
        (debug); set it to one of these numbers or to ``"error"``, ``"warning"``, ``"info"``
        or ``"debug"``. Anything else raises :class:`ValueError`."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        self._verbosity = _parse_verbosity(value)
        logger.setLevel(_LEVELS[self._verbosity])
        self._install_handler()

    @contextmanager
    def override(self, *, verbosity: int | str) -> Iterator[None]:
        """Set ``verbosity`` inside a ``with`` block only; the verbosity and the logger's
        level before it are restored at its end (also when it raises)."""
        level = _parse_verbosity(verbosity)
        saved, saved_level = self._verbosity, logger.level
        self.verbosity = level
        try:
            yield
        finally:
            self._verbosity = saved
            logger.setLevel(saved_level)

    def _install_handler(self) -> None:
        """Give the package logger its stderr handler unless it has it (one, however often
        the verbosity is set and however many :class:`Settings` there are)."""
        if not any(h.name == HANDLER_NAME for h in logger.handlers):
            handler = _StderrHandler()
            handler.set_name(HANDLER_NAME)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)

    def __repr__(self) -> str:
        name = VERBOSITY_NAMES[self._verbosity]
        return f"groundgan.settings(verbosity={self._verbosity} ({name!r}))"


#: The package's settings (``gg.settings``).
settings = Settings()
