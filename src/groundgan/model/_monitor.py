"""(being written) Validation during training."""


class ValidationMonitor:
    """(being written)"""

    def __init__(self, model, adata, checkpoints, seed):
        raise NotImplementedError("validation during training is being written")
