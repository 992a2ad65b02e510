"""Tools: realism metrics, evaluation tables, GRN benchmark, trajectories, perturbation effects."""

from ._evaluate import *  # noqa: F403
from ._grn_benchmark import *  # noqa: F403
from ._linear_propagation import *  # noqa: F403
from ._metrics import *  # noqa: F403
from ._perturbation import *  # noqa: F403
from ._trajectory import *  # noqa: F403
