"""Baseline simulators behind the GroundGAN API (scGAN, cscGAN, cWGAN, scDesign2- and SPARSim-style)."""

from ._conditional import *  # noqa: F403
from ._gan import *  # noqa: F403
from ._statistical import *  # noqa: F403
