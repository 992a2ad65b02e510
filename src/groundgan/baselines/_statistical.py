"""The statistical baselines of the paper: scDesign2-style and SPARSim-style simulators."""

from ._scdesign2 import ScDesign2
from ._sparsim import SPARSim

__all__ = ["ScDesign2", "SPARSim"]
