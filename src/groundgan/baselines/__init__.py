"""Baseline simulators behind the GroundGAN API (scGAN, cscGAN, cWGAN, scDesign2- and SPARSim-style)."""

from ._statistical import *  # noqa: F403
