"""The one seed rule of groundgan: what every ``seed=`` argument accepts.

``sample``, ``perturb``, ``replay_state`` and ``train`` of every model, and the GRN functions,
take a seed through :func:`check_seed` (or :func:`resolve_seed` where ``None`` draws one): a
non-negative integer below :data:`SEED_BOUND`. Booleans, floats, strings and negative numbers
are refused with the same message everywhere. The bound is the one every random generator the
package feeds accepts (numpy, torch and scikit-learn's ``random_state``, which stops at
``2**32 - 1``).
"""

from __future__ import annotations

import numpy as np

from ._errors import InvalidInputError

#: Seeds are integers in ``[0, SEED_BOUND)``.
SEED_BOUND = 2**32


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an ``int``, or :class:`~groundgan.InvalidInputError` naming the rule.

    Parameters
    ----------
    seed
        The value to check: an integer (Python or numpy) in ``[0, 2**32)``.
    name
        The argument's name in the error message.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidInputError(
            f"{name} must be a non-negative integer below 2**32, got {seed!r} "
            f"({type(seed).__name__})"
        )
    if not 0 <= int(seed) < SEED_BOUND:
        raise InvalidInputError(f"{name} must be a non-negative integer below 2**32, got {seed!r}")
    return int(seed)


def resolve_seed(seed: object, name: str = "seed") -> int:
    """:func:`check_seed`, with ``None`` drawing a fresh seed (to be recorded by the caller)."""
    if seed is None:
        return int(np.random.default_rng().integers(SEED_BOUND))
    return check_seed(seed, name)
