"""Plots (scanpy conventions: ``ax``, ``show``, ``save``; return the axes)."""

from ._embedding import *  # noqa: F403
from ._grn import *  # noqa: F403
from ._perturbation import *  # noqa: F403
from ._trajectory import *  # noqa: F403
