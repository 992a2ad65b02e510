"""Target generators: independence per gene, equivalence with the dense masked network, scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groundgan.nn import GroundGANModule, TargetGenerators
from groundgan.nn._blocks import BN_EPS
from tiny_networks import random_regulators


@pytest.fixture
def small_generators():
    torch.manual_seed(0)
    regulators = random_regulators(n_tfs=6, n_targets=9, max_degree=4)
    return regulators, TargetGenerators(regulators, depth=3, width=2.0)


def test_gradient_zero_for_non_regulators_and_other_noise(small_generators):
    regulators, tg = small_generators
    with torch.no_grad():  # keep every output above its ReLU so that gradients are informative
        for group in tg.groups:
            group.out_bias.fill_(10.0)
    tfs = torch.randn(32, 6, requires_grad=True)
    noise = torch.randn(32, 9, requires_grad=True)
    out = tg(tfs, noise)
    for j, regs in enumerate(regulators):
        g_tf, g_noise = torch.autograd.grad(out[:, j].sum(), [tfs, noise], retain_graph=True)
        per_tf = g_tf.abs().sum(0)
        per_noise = g_noise.abs().sum(0)
        others = [k for k in range(6) if k not in regs]
        assert torch.all(per_tf[others] == 0), f"gene {j} depends on a non-regulator"
        assert torch.all(per_tf[regs] > 0), f"gene {j} ignores a regulator"
        assert per_noise[j] > 0
        assert torch.all(per_noise[torch.arange(9) != j] == 0), f"gene {j} sees other noise"


def dense_masked_forward(tg: TargetGenerators, regulators, tfs, noise):
    """The reference implementation's formulation: dense layers over all genes' units, masked.

    Input = [all TFs, all noise]; hidden layer l holds every gene's units side by side;
    weights outside a gene's own block are zero. Built here from the block weights only.
    """
    n_tfs, n_targets = tfs.shape[1], noise.shape[1]
    per_gene = {}
    for gi, group in enumerate(tg.groups):
        genes = getattr(tg, f"genes_{gi}").tolist()
        for row, gene in enumerate(genes):
            per_gene[gene] = [
                [w[row] for w in group.weights],
                [b[row, 0] for b in group.biases],
                [w[row] for w in group.bn_weights],
                [b[row] for b in group.bn_biases],
                group.out_weight[row, :, 0],
                group.out_bias[row, 0, 0],
            ]
    depth = len(tg.groups[0].weights)
    widths = [per_gene[j][0][0].shape[1] for j in range(n_targets)]
    total = sum(widths)
    starts = np.cumsum([0, *widths])
    first = torch.zeros(n_tfs + n_targets, total)
    for j, regs in enumerate(regulators):
        w0 = per_gene[j][0][0]
        cols = slice(starts[j], starts[j + 1])
        first[regs, cols] = w0[: len(regs)]
        first[n_tfs + j, cols] = w0[len(regs)]
    mask = (first != 0).float()
    h = torch.cat([tfs, noise], dim=1) @ (first * mask)
    for layer in range(depth):
        if layer > 0:
            h = h @ torch.block_diag(*[per_gene[j][0][layer] for j in range(n_targets)])
        h = h + torch.cat([per_gene[j][1][layer] for j in range(n_targets)])
        mean, var = h.mean(0), h.var(0, unbiased=False)
        gamma = torch.cat([per_gene[j][2][layer] for j in range(n_targets)])
        beta = torch.cat([per_gene[j][3][layer] for j in range(n_targets)])
        h = F.relu((h - mean) / torch.sqrt(var + BN_EPS) * gamma + beta)
    out_w = torch.zeros(total, n_targets)
    for j in range(n_targets):
        out_w[starts[j] : starts[j + 1], j] = per_gene[j][4]
    out_b = torch.stack([per_gene[j][5] for j in range(n_targets)])
    return F.relu(h @ out_w + out_b)


def test_equivalent_to_dense_masked_network(small_generators):
    regulators, tg = small_generators
    with torch.no_grad():  # non-trivial BatchNorm affine parameters and biases
        for p in tg.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.manual_seed(1)
    tfs, noise = torch.rand(64, 6) * 5, torch.randn(64, 9)
    with torch.no_grad():
        block = tg(tfs, noise)
        dense = dense_masked_forward(tg, regulators, tfs, noise)
    assert block.shape == (64, 9)
    assert (block > 0).float().mean() > 0.2  # a meaningful comparison, not all zeros
    torch.testing.assert_close(block, dense, atol=1e-5, rtol=1e-5)


def test_hidden_width_follows_regulators_and_width():
    tg = TargetGenerators([[0], [0, 1, 2]], depth=2, width=2.0)
    widths = sorted(g.hidden_width for g in tg.groups)
    assert widths == [4, 8]  # 2 x (1 + 1), 2 x (3 + 1)
    assert all(len(g.weights) == 2 for g in tg.groups)


def test_rejects_targets_without_regulators():
    with pytest.raises(ValueError, match="regulator"):
        TargetGenerators([[0], []])


def test_pbmc_sized_model_is_small_and_trains_a_step_on_cpu():
    """1,000 genes, 63 TFs, 937 targets x 15 TFs at the paper's settings for > 5,000 edges."""
    from groundgan.train import GroundGANStage, StageSettings

    n_tfs, n_targets = 63, 937
    rng = np.random.default_rng(0)
    regulators = [sorted(rng.choice(n_tfs, 15, replace=False).tolist()) for _ in range(n_targets)]
    module = GroundGANModule(
        n_genes=n_tfs + n_targets,
        tf_index=list(range(n_tfs)),
        target_index=list(range(n_tfs, n_tfs + n_targets)),
        regulators=regulators,
        latent_dim=128,
        controller_hidden=(256, 512, 1024),
        critic_hidden=(1024, 512, 256),
        labeler_hidden=(2000, 2000, 2000),
        depth=2,
        width=1.0,
        library_size=20_000,
    )
    n_params = sum(p.numel() for p in module.parameters())
    tg_params = sum(p.numel() for p in module.target_generators.parameters())
    assert n_params < 60_000_000
    assert tg_params < 1_000_000  # the dense masked form has ~ (2 x 15,000)^2 per layer
    data = torch.rand(1100, n_tfs + n_targets)
    data = data / data.sum(1, keepdim=True) * 20_000
    stage = GroundGANStage(
        module,
        data,
        StageSettings(max_steps=10, batch_size=1024, n_critic=1),
        torch.Generator().manual_seed(0),
    )
    before = [p.detach().clone() for p in module.target_generators.parameters()]
    losses = stage.step()
    assert torch.isfinite(losses).all()
    after = list(module.target_generators.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_batch_statistics_match_float64_reference():
    from groundgan.nn._target_generators import batch_statistics

    g = torch.Generator().manual_seed(0)
    h = torch.randn(20, 6, 512, generator=g, dtype=torch.float64) * 3 + 50  # far-off mean
    mean, var = batch_statistics(h.float())
    ref_var, ref_mean = torch.var_mean(h, dim=2, unbiased=False)
    assert mean.dtype == var.dtype == torch.float32 and mean.shape == (20, 6)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), ref_var, rtol=2e-6, atol=0)
    _, var_bf16 = batch_statistics(h.to(torch.bfloat16))
    assert var_bf16.dtype == torch.float32  # statistics stay float32 under autocast


# --------------------------------------------------------------------------------------------
# the bipartite case is the flat pass it always was
# --------------------------------------------------------------------------------------------


def flat_generators(regulators, depth, width):
    """Before cascades: one group per in-degree, in increasing in-degree, built in that order."""
    from groundgan.nn._target_generators import GeneGroup

    in_degree = np.array([len(r) for r in regulators])
    groups = []
    for degree in np.unique(in_degree):
        genes = np.flatnonzero(in_degree == degree)
        groups.append((genes, GeneGroup(len(genes), int(degree), depth, width)))
    return groups


def flat_forward(groups, regulators, tfs, noise, record):
    n_targets = noise.shape[1]
    rows = torch.cat([noise, tfs], dim=1).T.contiguous()
    outputs, order = [], []
    for genes, group in groups:
        regs = np.array([regulators[g] for g in genes])
        index = torch.as_tensor(np.concatenate([regs + n_targets, genes[:, None]], axis=1))
        outputs.append(group(rows[index], None, record))
        order.extend(genes.tolist())
    return torch.cat(outputs, dim=0)[torch.as_tensor(np.argsort(order))].T


def test_bipartite_grn_is_the_flat_pass_bit_for_bit():
    regulators = random_regulators(n_tfs=6, n_targets=15, max_degree=4, seed=3)
    torch.manual_seed(7)
    tg = TargetGenerators(regulators, depth=2, width=2.0)
    torch.manual_seed(7)
    flat = flat_generators(regulators, depth=2, width=2.0)
    assert tg.n_levels == 1
    ours = [p for p in tg.parameters()]
    theirs = [p for _, group in flat for p in group.parameters()]
    assert len(ours) == len(theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))  # same init draws
    tfs, noise = torch.rand(40, 6) * 3, torch.randn(40, 15)
    ours_record, theirs_record = [], []
    out = tg(tfs, noise, record=ours_record)
    ref = flat_forward(flat, regulators, tfs, noise, theirs_record)
    assert torch.equal(out, ref)
    for (m1, v1), (m2, v2) in zip(ours_record, theirs_record, strict=True):
        assert torch.equal(m1, m2) and torch.equal(v1, v2)
    grads = torch.autograd.grad(out.square().sum(), ours)
    ref_grads = torch.autograd.grad(ref.square().sum(), theirs)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))


# --------------------------------------------------------------------------------------------
# cascades: generation level by level
# --------------------------------------------------------------------------------------------

N_ROOTS, LEVELS = 4, [5, 4, 3]


@pytest.fixture
def cascade():
    from tiny_networks import random_dag

    regulators = random_dag(N_ROOTS, LEVELS, max_degree=3, seed=0)
    torch.manual_seed(0)
    tg = TargetGenerators(regulators, depth=2, width=2.0, n_roots=N_ROOTS)
    with torch.no_grad():  # every output above its ReLU: gradients are informative
        for group in tg.groups:
            group.out_bias.fill_(10.0)
    return regulators, tg


def ancestors(regulators, n_roots, gene):
    """Roots and regulated genes upstream of regulated gene ``gene`` (source indices)."""
    seen, stack = set(), list(regulators[gene])
    while stack:
        source = stack.pop()
        if source not in seen:
            seen.add(source)
            if source >= n_roots:
                stack.extend(regulators[source - n_roots])
    return seen


def test_levels_and_groups_follow_the_dag(cascade):
    regulators, tg = cascade
    assert tg.n_levels == 3
    assert np.bincount(tg.gene_levels)[1:].tolist() == LEVELS
    for level, groups in enumerate(tg.level_groups, start=1):
        for i in groups:
            genes = getattr(tg, f"genes_{i}").tolist()
            assert all(tg.gene_levels[g] == level for g in genes)
            assert len({len(regulators[g]) for g in genes}) == 1  # one in-degree per group
    assert "levels=3" in repr(tg)


def test_each_gene_reads_only_its_regulators_and_its_own_noise(cascade):
    """With every regulated TF clamped to a free input, a gene's gradient reaches exactly its
    regulators and its own noise."""
    regulators, tg = cascade
    n = len(regulators)
    regulating = sorted({s - N_ROOTS for regs in regulators for s in regs if s >= N_ROOTS})
    roots = torch.rand(32, N_ROOTS, requires_grad=True)
    noise = torch.randn(32, n, requires_grad=True)
    clamped = torch.rand(32, len(regulating), requires_grad=True)
    out = tg(roots, noise, clamp=(torch.as_tensor(regulating), clamped))
    for j in (j for j in range(n) if j not in regulating):
        g_roots, g_noise, g_clamped = torch.autograd.grad(
            out[:, j].sum(), [roots, noise, clamped], retain_graph=True
        )
        reads = {s for s in range(N_ROOTS) if g_roots[:, s].abs().sum() > 0}
        reads |= {N_ROOTS + k for c, k in enumerate(regulating) if g_clamped[:, c].abs().sum() > 0}
        assert reads == set(regulators[j]), f"gene {j}"
        assert g_noise[:, j].abs().sum() > 0
        assert torch.all(g_noise[:, torch.arange(n) != j] == 0), f"gene {j} sees other noise"


def test_without_clamps_a_gene_depends_on_its_ancestors_only(cascade):
    regulators, tg = cascade
    n = len(regulators)
    roots = torch.rand(32, N_ROOTS, requires_grad=True)
    noise = torch.randn(32, n, requires_grad=True)
    out = tg(roots, noise)
    for j in range(n):
        g_roots, g_noise = torch.autograd.grad(out[:, j].sum(), [roots, noise], retain_graph=True)
        upstream = ancestors(regulators, N_ROOTS, j)
        expected_noise = {j} | {s - N_ROOTS for s in upstream if s >= N_ROOTS}
        assert {s for s in range(N_ROOTS) if g_roots[:, s].abs().sum() > 0} == {
            s for s in upstream if s < N_ROOTS
        }
        assert {k for k in range(n) if g_noise[:, k].abs().sum() > 0} == expected_noise


def test_cascade_replays_bit_for_bit_and_clamps_are_the_do_operator(cascade):
    regulators, tg = cascade
    n = len(regulators)
    roots, noise = torch.rand(50, N_ROOTS), torch.randn(50, n)
    with torch.no_grad():
        record = []
        control = tg(roots, noise, record=record)
        assert len(record) == tg.n_bn_layers
        assert torch.equal(tg(roots, noise, stats=record), control)
        # clamp one level-1 gene that regulates others
        gene = next(
            k
            for k in range(n)
            if tg.gene_levels[k] == 1 and any(N_ROOTS + k in regs for regs in regulators)
        )
        value = torch.full((50, 1), 3.5)
        do = tg(roots, noise, stats=record, clamp=(torch.as_tensor([gene]), value))
    assert torch.equal(do[:, gene], value[:, 0])
    downstream = {j for j in range(n) if N_ROOTS + gene in ancestors(regulators, N_ROOTS, j)}
    assert len(downstream) >= 2
    for j in range(n):
        if j == gene:
            continue
        if j in downstream:
            assert not torch.equal(do[:, j], control[:, j]), f"descendant {j} unchanged"
        else:
            assert torch.equal(do[:, j], control[:, j]), f"non-descendant {j} changed"


def test_calibration_rescales_every_level(cascade):
    regulators, tg = cascade
    roots, noise = torch.rand(256, N_ROOTS), torch.randn(256, len(regulators))
    mean, std = torch.full((len(regulators),), 2.0), torch.full((len(regulators),), 0.5)
    tg.calibrate_output(roots, noise, mean, std)
    with torch.no_grad():
        pre = tg(roots, noise, relu=False)
    torch.testing.assert_close(pre.mean(0), mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(pre.std(0), std, atol=1e-4, rtol=0)


def test_cycle_among_regulated_genes_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        TargetGenerators([[0, 2], [1]], n_roots=1)  # gene 0 <- gene 1 <- gene 0
