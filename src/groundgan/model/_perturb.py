"""(being written) In-silico perturbation with exact replay."""


class ReplayState:
    """(being written)"""


def replay_state(model, n_cells, seed):
    raise NotImplementedError


def perturb(model, perturbations, n_cells, seed, mode, state):
    raise NotImplementedError
