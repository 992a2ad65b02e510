"""GroundGANModule: which networks generate (trained or averaged), and state dicts with averages."""

from __future__ import annotations

import torch

from tiny_networks import tiny_module


def noise(module, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, module.controller.latent_dim, generator=g),
        torch.randn(n, module.n_targets, generator=g),
    )


def perturb_weights(network: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in network.parameters():
            p.mul_(1.5).add_(0.1)


def test_generating_uses_the_averages_and_training_the_weights():
    module = tiny_module()
    z, e = noise(module)
    averaged = module.start_average("target_generators")
    perturb_weights(averaged)
    module.eval()
    with torch.no_grad():
        trained_cells = module.generate(z, e)
    with module.generating():
        averaged_cells = module.generate(z, e)
    assert not torch.equal(trained_cells, averaged_cells)
    # the same as a module whose target generators are the averaged ones
    reference = tiny_module()
    reference.target_generators.load_state_dict(averaged.state_dict())
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(reference.generate(z, e), averaged_cells, rtol=0, atol=0)
    assert module.part("target_generators") is module.target_generators  # outside: weights
    assert not module.training  # generating() restored eval mode


def test_generating_without_averages_is_the_plain_eval_pass():
    module = tiny_module()
    z, e = noise(module)
    module.eval()
    with torch.no_grad():
        plain = module.generate(z, e)
    module.train()
    with module.generating():
        assert torch.equal(module.generate(z, e), plain)
    assert module.training


def test_adopt_average_replaces_the_network_and_drops_the_average():
    module = tiny_module()
    perturb_weights(module.start_average("controller"))
    expected = {k: v.clone() for k, v in module.ema["controller"].state_dict().items()}
    module.adopt_average("controller")
    assert len(module.ema) == 0
    assert all(torch.equal(v, expected[k]) for k, v in module.controller.state_dict().items())
    module.adopt_average("controller")  # no average: nothing happens


def test_state_dicts_carry_the_averages_both_ways():
    with_average = tiny_module()
    perturb_weights(with_average.start_average("target_generators"))
    state = with_average.state_dict()
    assert any(k.startswith("ema.target_generators.") for k in state)
    fresh = tiny_module()
    fresh.load_state_dict(state)  # creates the average it lacks
    assert all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items())
    fresh.load_state_dict(tiny_module().state_dict())  # drops the one the state lacks
    assert len(fresh.ema) == 0


def test_labelers_read_the_leaves_and_predict_every_regulator():
    from groundgan.nn import GroundGANModule, labeler_genes

    # genes 0, 3 root TFs; gene 1 <- 0; gene 2 <- gene 1; gene 4 <- 3; gene 5 <- gene 2
    tf_index, target_index = [0, 3], [1, 2, 4, 5]
    regulators = [[0], [2], [1], [3]]  # sources: 0-1 roots, 2 + k regulated gene k
    inputs, outputs = labeler_genes(tf_index, target_index, regulators)
    assert inputs == [4, 5]  # the genes that regulate nothing
    assert outputs == [0, 3, 1, 2]  # the roots, then the regulated TFs
    bipartite = labeler_genes([0, 3], [1, 2], [[0], [0, 1]])
    assert bipartite == ([1, 2], [0, 3])
    module = GroundGANModule(
        n_genes=6,
        tf_index=tf_index,
        target_index=target_index,
        regulators=regulators,
        latent_dim=4,
        controller_hidden=(8,),
        critic_hidden=(8,),
        labeler_hidden=(8,),
        depth=1,
        width=1.0,
        library_size=10.0,
    )
    assert module.labeler_inputs.tolist() == inputs
    assert module.labeler(torch.rand(5, 2)).shape == (5, 4)
    assert module.target_generators.n_levels == 3
