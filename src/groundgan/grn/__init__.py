"""Gene regulatory networks: inference (GRNBoost2 and others), validation, subsetting, files."""

from ._dag import *  # noqa: F403
from ._infer import *  # noqa: F403
from ._io import *  # noqa: F403
from ._methods import *  # noqa: F403
from ._subset import *  # noqa: F403
from ._validate import *  # noqa: F403
