"""The package's error class, importable without the single-cell stack (``gg.InvalidInputError``)."""

from __future__ import annotations

__all__ = ["InvalidInputError"]


class InvalidInputError(ValueError):
    """Input data or arguments that groundgan cannot work with.

    A :class:`ValueError`: its message names the problem and the fix, and the function that
    raised it has changed nothing (neither the user's AnnData nor any file).

    Examples
    --------
    >>> import groundgan as gg
    >>> try:
    ...     gg.datasets.tf_list("zebrafish")
    ... except gg.InvalidInputError as err:
    ...     print(err)
    species must be one of ['human', 'mouse'] (any case), got 'zebrafish'
    """


InvalidInputError.__module__ = "groundgan"
