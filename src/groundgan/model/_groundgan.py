"""(being written)"""


class GroundGAN:
    """(being written)"""
