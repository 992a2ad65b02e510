"""In-silico perturbation with exact replay: GroundGAN.replay_state / GroundGAN.perturb."""

from __future__ import annotations

import warnings

import anndata as ad
import mudata
import numpy as np
import pytest
import torch
from mudata import MuData

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.model._perturb import ReplayState, model_fingerprint
from groundgan.nn._blocks import BN_EPS


@pytest.fixture(scope="module")
def trained(train_tiny_groundgan, tmp_path_factory):
    """A tiny model trained briefly on the PBMC cells (150 + 150 steps), and its directory.

    The networks are tiny: one thread is faster than several (thread start-up dominates).
    """
    model, _ = train_tiny_groundgan(150)
    directory = tmp_path_factory.mktemp("perturb") / "model"
    model.save(directory)
    yield model, directory


@pytest.fixture(scope="module")
def model(trained):
    return trained[0]


def hub_tf(model) -> str:
    """The TF with the most targets."""
    return model.grn["tf"].value_counts().index[0]


def targets_of(model, *tfs) -> set[str]:
    grn = model.grn
    return set(grn.loc[grn["tf"].isin(tfs), "target"])


def column(model, gene) -> int:
    return model.layout.var_names.index(gene)


# control cells ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_cells", [1, 64, 150])
def test_control_is_sample_bitwise(model, n_cells):
    mdata = model.perturb({hub_tf(model): 0.0}, n_cells=n_cells, seed=3)
    sim = model.sample(n_cells, seed=3)
    assert np.array_equal(mdata.mod["control"].X, sim.X)
    assert list(mdata.mod["control"].obs["cell"]) == list(sim.obs_names)


def test_prefix_and_repeat_are_identical(model):
    tf = hub_tf(model)
    big = model.perturb({tf: 0.0}, n_cells=150, seed=5)  # 150 = 2 blocks + 22 cells
    again = model.perturb({tf: 0.0}, n_cells=150, seed=5)
    small = model.perturb({tf: 0.0}, n_cells=10, seed=5)
    for name in ("control", f"{tf}=0"):
        assert np.array_equal(big.mod[name].X, again.mod[name].X)
        assert np.array_equal(small.mod[name].X, big.mod[name].X[:10])
    other = model.perturb({tf: 0.0}, n_cells=10, seed=6)
    assert not np.array_equal(other.mod["control"].X, small.mod["control"].X)


# what changes ----------------------------------------------------------------------------
def test_knockout_changes_only_targets_of_the_tf(model):
    tf = hub_tf(model)
    mdata = model.perturb({tf: 0.0}, n_cells=200, seed=0)
    control, ko = mdata.mod["control"].X, mdata.mod[f"{tf}=0"].X
    genes = np.array(model.layout.var_names)
    changed = set(genes[(control != ko).any(axis=0)])
    targets = targets_of(model, tf)
    assert changed <= targets | {tf}
    assert len(changed & targets) >= 0.8 * len(targets)
    unchanged = [column(model, g) for g in genes if g not in targets and g != tf]
    assert np.array_equal(control[:, unchanged], ko[:, unchanged])  # bitwise
    assert np.all(ko[:, column(model, tf)] == 0)


def test_batchnorm_does_not_leak_within_a_group(model):
    """A target not regulated by the TF shares its in-degree group (and its batched matmul and
    BatchNorm call) with targets that are: it is still bitwise unchanged."""
    tf = hub_tf(model)
    tg = model.module.target_generators
    targets = targets_of(model, tf)
    names = model.layout.targets
    shared = None
    for i in range(len(tg.groups)):
        members = {names[j] for j in getattr(tg, f"genes_{i}").tolist()}
        if members & targets and members - targets:
            shared = sorted(members - targets)
            break
    assert shared, "the GRN fixture should put regulated and unregulated targets in one group"
    mdata = model.perturb({tf: 4 * model.library_size / 60}, n_cells=130, seed=1)
    cols = [column(model, g) for g in shared]
    assert np.array_equal(mdata.mod["control"].X[:, cols], mdata.mod[list(mdata.mod)[1]].X[:, cols])


def test_set_values_are_exact(model):
    tf = hub_tf(model)
    mdata = model.perturb([{tf: 0.0}, {tf: 1234.5}], n_cells=100, seed=2)
    c = column(model, tf)
    live = ~mdata.mod["control"].obs["zero_cell"].to_numpy()
    assert np.all(mdata.mod[f"{tf}=0"].X[:, c] == 0)
    assert np.all(mdata.mod[f"{tf}=1234.5"].X[live, c] == np.float32(1234.5))


def test_scale_values_are_exact_and_named(model):
    tf = hub_tf(model)
    mdata = model.perturb({tf: 2.0}, mode="scale", n_cells=100, seed=2)
    assert list(mdata.mod) == ["control", f"{tf}*2"]
    c = column(model, tf)
    control = mdata.mod["control"].X[:, c]
    assert np.array_equal(mdata.mod[f"{tf}*2"].X[:, c], control * np.float32(2.0))
    unit = model.perturb({tf: 1.0}, mode="scale", n_cells=100, seed=2)
    assert np.array_equal(unit.mod[f"{tf}*1"].X, unit.mod["control"].X)


def test_perturbed_cells_are_not_renormalised(model):
    tf = hub_tf(model)
    mdata = model.perturb({tf: 0.0}, n_cells=100, seed=0)
    control_totals = mdata.mod["control"].X.sum(axis=1)
    ko_totals = mdata.mod[f"{tf}=0"].X.sum(axis=1)
    np.testing.assert_allclose(control_totals, model.library_size, rtol=1e-4)
    assert not np.allclose(ko_totals, model.library_size, rtol=1e-3)


def reference_target(model, record, gene: str, tf_expression: torch.Tensor) -> np.ndarray:
    """One target gene's MLP evaluated gene by gene in float64 from the group weights, with
    the record's BatchNorm statistics: an independent implementation of the model's function.
    Returns pre-LSN values (cells,)."""
    tg = model.module.target_generators
    j = model.layout.targets.index(gene)
    offset = 0
    for i, group in enumerate(tg.groups):
        genes = getattr(tg, f"genes_{i}").tolist()
        if j in genes:
            p = genes.index(j)
            regs = getattr(tg, f"regulators_{i}")[p]
            x = torch.cat([tf_expression[:, regs], record.target_noise[:, j : j + 1]], 1).double()
            for layer in range(len(group.weights)):
                mean, var = (s[p].double() for s in record.target_stats[offset + layer])
                h = x @ group.weights[layer][p].double() + group.biases[layer][p, 0].double()
                h = (h - mean) / torch.sqrt(var + BN_EPS)
                x = torch.relu(h * group.bn_weights[layer][p] + group.bn_biases[layer][p])
            out = x @ group.out_weight[p].double() + group.out_bias[p, 0].double()
            return torch.relu(out[:, 0]).detach().numpy()
        offset += len(group.weights)
    raise AssertionError(gene)


def test_knockout_and_overexpression_follow_the_learned_dependence(model):
    """Knockout and strong overexpression differ, each as the model's own function predicts
    (finite difference between the two TF levels, evaluated by an independent gene-by-gene
    implementation with the control pass's BatchNorm statistics)."""
    tf = hub_tf(model)
    n = model.sample_block_size  # one block: its record is the whole state
    state = model.replay_state(n, seed=4)
    record = state.records[0]
    control = model.sample(n, seed=4).X
    high = float(4 * control[:, column(model, tf)].max())
    mdata = model.perturb([{tf: 0.0}, {tf: high}], state=state)
    ko, oe = mdata.mod[f"{tf}=0"].X, mdata.mod[list(mdata.mod)[2]].X
    scale = record.lsn_scale[:, 0].double().numpy()
    assert np.all(scale > 0)
    k = model.layout.tfs.index(tf)
    tf_at = {}
    for level in (0.0, high):
        tfs = record.tf_expression.clone()
        tfs[:, k] = level / record.lsn_scale[:, 0]
        tf_at[level] = tfs
    n_differ = 0
    targets = sorted(targets_of(model, tf))
    for gene in targets:
        c = column(model, gene)
        f0 = reference_target(model, record, gene, tf_at[0.0]) * scale
        f1 = reference_target(model, record, gene, tf_at[high]) * scale
        np.testing.assert_allclose(ko[:, c], f0, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(oe[:, c], f1, rtol=1e-4, atol=1e-2)
        slope = (f1 - f0) / high  # finite difference of the learned function
        moved = np.abs(f1 - f0) > 1e-2 * (1 + np.abs(f0))
        assert np.array_equal(np.sign(oe[moved, c] - ko[moved, c]), np.sign(slope[moved]))
        n_differ += bool(moved.any())
    assert n_differ >= 0.8 * len(targets)
    # with batch statistics recomputed, both perturbations would give the same targets
    cols = [column(model, g) for g in targets]
    assert not np.allclose(ko[:, cols], oe[:, cols])


def test_two_perturbations_and_combined_tfs(model):
    tfs = model.grn["tf"].value_counts().index[:2].tolist()
    mdata = model.perturb([{tfs[0]: 0.0}, {tfs[0]: 0.0, tfs[1]: 0.0}], n_cells=80, seed=0)
    both = f"{tfs[0]}=0,{tfs[1]}=0"
    assert list(mdata.mod) == ["control", f"{tfs[0]}=0", both]
    genes = np.array(model.layout.var_names)
    changed = set(genes[(mdata.mod["control"].X != mdata.mod[both].X).any(axis=0)])
    assert changed <= targets_of(model, *tfs) | set(tfs)
    table = mdata.uns["groundgan_perturbations"]
    assert table.to_dict("list") == {
        "modality": [f"{tfs[0]}=0", both, both],
        "gene": [tfs[0], tfs[0], tfs[1]],
        "value": [0.0, 0.0, 0.0],
        "mode": ["set", "set", "set"],
    }


# MuData ----------------------------------------------------------------------------------
def test_mudata_layout_and_round_trip(model, tmp_path):
    tf = hub_tf(model)
    mdata = model.perturb({tf: 0.0}, n_cells=20, seed=7)
    assert isinstance(mdata, MuData) and mdata.axis == 1
    assert mdata.n_vars == len(model.layout.var_names) and mdata.n_obs == 40
    control, ko = mdata.mod["control"], mdata.mod[f"{tf}=0"]
    assert list(control.obs_names[:2]) == ["control:sim_0", "control:sim_1"]
    assert list(ko.obs_names[:2]) == [f"{tf}=0:sim_0", f"{tf}=0:sim_1"]
    assert list(control.obs["cell"]) == list(ko.obs["cell"])
    assert list(mdata.var_names) == model.layout.var_names
    assert ko.var["perturbed_tf"].sum() == 1 and ko.var.loc[tf, "perturbed_tf"]
    assert set(ko.var_names[ko.var["direct_target"]]) == targets_of(model, tf)
    assert mdata.uns["groundgan"]["seed"] == 7 and mdata.uns["groundgan"]["mode"] == "set"
    assert set(mdata.uns["groundgan_grn"]["tf"]) == set(model.layout.tfs)
    path = tmp_path / "ko.h5mu"
    mdata.write(path)
    back = mudata.read_h5mu(path)
    assert np.array_equal(back.mod[f"{tf}=0"].X, ko.X)
    assert back.uns["groundgan_perturbations"]["gene"].tolist() == [tf]


def test_perturb_and_its_result_emit_no_future_warning(model, tmp_path, monkeypatch):
    """mudata 0.3 warns about pull_on_update at every update of a MuData while the option is
    unset; perturb adopts the coming default, and keeps a user's explicit choice."""
    from mudata._core.config import OPTIONS

    monkeypatch.setitem(OPTIONS, "pull_on_update", None)  # as in a fresh session
    tf = hub_tf(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        mdata = model.perturb({tf: 0.0}, n_cells=10, seed=0)
        gg.tl.perturbation_effect(mdata)
        mdata.update()
        assert mdata[:5].copy().n_obs == 5
        mdata.write(tmp_path / "ko.h5mu")
    assert OPTIONS["pull_on_update"] is False
    monkeypatch.setitem(OPTIONS, "pull_on_update", True)
    model.perturb({tf: 0.0}, n_cells=10, seed=0)
    assert OPTIONS["pull_on_update"] is True  # the user's choice is kept


def test_seed_none_is_recorded(model):
    mdata = model.perturb({hub_tf(model): 0.0}, n_cells=5)
    seed = mdata.uns["groundgan"]["seed"]
    assert np.array_equal(mdata.mod["control"].X, model.sample(5, seed=seed).X)


# replay states ---------------------------------------------------------------------------
def test_state_reuse_save_and_load(model, trained, tmp_path):
    tf = hub_tf(model)
    state = model.replay_state(70, seed=11)
    assert (state.n_cells, state.seed, state.n_blocks, state.block_size) == (70, 11, 2, 64)
    direct = model.perturb({tf: 0.0}, n_cells=70, seed=11)
    reused = model.perturb({tf: 0.0}, state=state)
    assert np.array_equal(direct.mod[f"{tf}=0"].X, reused.mod[f"{tf}=0"].X)
    path = tmp_path / "state.npz"
    state.save(path)
    with np.load(path, allow_pickle=False) as f:  # plain arrays only
        assert "meta" in f.files
    loaded = ReplayState.load(path)
    assert (loaded.n_cells, loaded.seed) == (70, 11)
    reloaded = gg.GroundGAN.load(trained[1])
    again = reloaded.perturb({tf: 0.0}, n_cells=70, seed=11, state=loaded)
    for name in ("control", f"{tf}=0"):
        assert np.array_equal(again.mod[name].X, direct.mod[name].X)
    assert np.array_equal(again.mod["control"].X, model.sample(70, seed=11).X)


def test_state_from_another_model_is_refused(model, trained, tmp_path):
    tf = hub_tf(model)
    state = model.replay_state(10, seed=0)
    other = gg.GroundGAN.load(trained[1])
    with torch.no_grad():
        other.module.target_generators.groups[0].out_bias.add_(1e-3)
    assert model_fingerprint(other) != model_fingerprint(model)
    with pytest.raises(InvalidInputError, match="another model"):
        other.perturb({tf: 0.0}, state=state)
    state.save(tmp_path / "s.npz")
    with pytest.raises(InvalidInputError, match="another model"):
        other.perturb({tf: 0.0}, state=ReplayState.load(tmp_path / "s.npz"))
    blocky = gg.GroundGAN.load(trained[1])
    blocky.sample_block_size = 32
    with pytest.raises(InvalidInputError, match="block size"):
        blocky.perturb({tf: 0.0}, state=state)


def test_not_a_state_file(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(InvalidInputError, match="not a groundgan replay state"):
        ReplayState.load(path)
    (tmp_path / "y.npz").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a groundgan replay state"):
        ReplayState.load(tmp_path / "y.npz")


# errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("perturbations", "kwargs", "match"),
    [
        ({"NOT_A_GENE": 0.0}, {}, "'NOT_A_GENE' is not one of the model's genes"),
        ({"<tf>": float("nan")}, {}, "for '<tf>' must be finite"),
        ({"<tf>": float("inf")}, {}, "for '<tf>' must be finite"),
        ({"<tf>": -1.0}, {}, "for '<tf>' must be finite and >= 0"),
        ({"<tf>": -1.0}, {"mode": "scale"}, "factor for '<tf>'"),
        ({"<tf>": "a lot"}, {}, "must be a number"),
        ({}, {}, "perturbation #0 is empty"),
        ([], {}, "no perturbation given"),
        ([{"<tf>": 0.0}, {"<tf>": 0}], {}, "given twice"),
        ("<tf>", {}, "must be a dict"),
        ({"<tf>": 0.0}, {"mode": "knockout"}, "unknown perturbation mode 'knockout'"),
        ({"<tf>": 0.0}, {"n_cells": None}, "n_cells is required"),
        ({"<tf>": 0.0}, {"n_cells": 0}, "n_cells must be a positive integer"),
    ],
)
def test_invalid_perturbations(model, perturbations, kwargs, match):
    tf = hub_tf(model)

    def fill(x):
        if isinstance(x, dict):
            return {(tf if k == "<tf>" else k): v for k, v in x.items()}
        if isinstance(x, list):
            return [fill(i) for i in x]
        return tf if x == "<tf>" else x

    kwargs = {"n_cells": 5, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match.replace("<tf>", tf)) as info:
        model.perturb(fill(perturbations), **kwargs)
    assert isinstance(info.value, InvalidInputError)


def test_target_gene_is_refused(model):
    target = model.layout.targets[0]
    with pytest.raises(
        InvalidInputError, match=f"'{target}' is a target gene, not a TF; only TFs can be perturbed"
    ):
        model.perturb({target: 0.0}, n_cells=5, seed=0)


def test_state_and_arguments_must_agree(model):
    tf = hub_tf(model)
    state = model.replay_state(10, seed=0)
    with pytest.raises(InvalidInputError, match="n_cells=20 disagrees"):
        model.perturb({tf: 0.0}, n_cells=20, state=state)
    with pytest.raises(InvalidInputError, match="seed=1 disagrees"):
        model.perturb({tf: 0.0}, seed=1, state=state)
    with pytest.raises(InvalidInputError, match="must be a ReplayState"):
        model.perturb({tf: 0.0}, state="state.npz")
    same = model.perturb({tf: 0.0}, n_cells=10, seed=0, state=state)
    assert same.n_obs == 20


def test_untrained_model_is_refused(_pbmc_grn_cells_cached):
    adata, grn = (x.copy() for x in _pbmc_grn_cells_cached)
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    model = gg.GroundGAN(
        adata,
        latent_dim=4,
        controller_hidden=(8,),
        critic_hidden=(8,),
        labeler_hidden=(8,),
        depth=1,
        width=1,
    )
    tf = model.layout.tfs[0]
    with pytest.raises(InvalidInputError, match=r"not trained.*allow_untrained=True"):
        model.perturb({tf: 0.0}, n_cells=5, seed=0)
    with pytest.raises(InvalidInputError, match=r"not trained.*allow_untrained=True"):
        model.replay_state(5, seed=0)
    # sample and perturb treat an untrained model the same way: allowed on request
    state = model.replay_state(5, seed=0, allow_untrained=True)
    mdata = model.perturb({tf: 0.0}, state=state, allow_untrained=True)
    control = model.sample(5, seed=0, allow_untrained=True)
    assert np.array_equal(mdata.mod["control"].X, control.X)


def test_control_modality_is_plain_anndata(model):
    mdata = model.perturb({hub_tf(model): 0.0}, n_cells=5, seed=0)
    control = mdata.mod["control"]
    assert isinstance(control, ad.AnnData)
    assert control.X.dtype == np.float32
    assert control.uns["groundgan"]["seed"] == 0
    assert "groundgan_perturbations" not in control.uns


# cascades: GRNs with TF -> TF edges --------------------------------------------------------
@pytest.fixture(scope="module")
def cascade_trained(train_tiny_cascade, tmp_path_factory):
    """A tiny model on a 4-level GRN (see conftest.cascade_grn), and its directory."""
    model, _, tfs = train_tiny_cascade(60)  # tfs in cascade_grn's order: roots 0-3, then 4-7
    directory = tmp_path_factory.mktemp("cascade") / "model"
    model.save(directory)
    return model, directory, tfs


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def changed_genes(mdata, name) -> set[str]:
    control, perturbed = dense(mdata.mod["control"].X), dense(mdata.mod[name].X)
    var = mdata.mod["control"].var_names
    return {g for g, c in zip(var, (control != perturbed).any(axis=0), strict=True) if c}


def test_cascade_knockout_of_a_root_reaches_every_level_and_nothing_else(cascade_trained):
    model, _, tfs = cascade_trained
    root = tfs[0]  # regulates tf 4 (level 1) and tf 6 (level 2), hence tf 7 (level 3)
    mdata = model.perturb({root: 0.0}, n_cells=200, seed=2)
    var = mdata.mod[f"{root}=0"].var
    downstream = set(var.index[var["downstream"]])
    assert {tfs[4], tfs[6], tfs[7]} <= downstream
    assert var.loc[root, "distance"] == 0
    assert var.loc[tfs[4], "distance"] == 1 and var.loc[tfs[7], "distance"] == 2
    assert var.loc[tfs[5], "distance"] == -1 and not var.loc[tfs[5], "downstream"]
    changed = changed_genes(mdata, f"{root}=0")
    assert changed <= downstream | {root}  # non-descendants are bitwise the control
    assert {tfs[4], tfs[6], tfs[7]} <= changed  # and the cascade reached three levels


def test_descendants_at_distance_two_change_with_their_parent(cascade_trained):
    model, _, tfs = cascade_trained
    mdata = model.perturb({tfs[1]: 0.0}, n_cells=200, seed=2)  # tf 1 -> tf 4 -> {tf 6, ...}
    var = mdata.mod[f"{tfs[1]}=0"].var
    second = set(var.index[var["distance"] == 2])
    assert tfs[6] in second
    changed = changed_genes(mdata, f"{tfs[1]}=0")
    assert tfs[4] in changed
    assert second <= changed, f"distance-2 genes unchanged: {second - changed}"


def test_a_perturbed_regulated_tf_is_clamped(cascade_trained):
    model, _, tfs = cascade_trained
    regulated = tfs[4]  # regulated by tfs 0 and 1, regulates tf 6 and targets
    for perturbation, name, mode in [(0.0, f"{regulated}=0", "set"),
                                     (2.0, f"{regulated}*2", "scale")]:  # fmt: skip
        mdata = model.perturb({regulated: perturbation}, n_cells=150, seed=4, mode=mode)
        control, perturbed = dense(mdata.mod["control"].X), dense(mdata.mod[name].X)
        j = column(model, regulated)
        expected = np.zeros_like(control[:, j]) if mode == "set" else control[:, j] * 2
        np.testing.assert_allclose(perturbed[:, j], expected, rtol=1e-6)
        var = mdata.mod[name].var
        changed = changed_genes(mdata, name)
        assert changed <= set(var.index[var["downstream"]]) | {regulated}
        assert not {tfs[0], tfs[1]} & changed  # its regulators are untouched: do(), not see()
        assert tfs[6] in changed


def test_cascade_samples_are_deterministic_and_carry_levels(cascade_trained):
    model, _, tfs = cascade_trained
    a, b = model.sample(100, seed=9), model.sample(100, seed=9)
    assert np.array_equal(dense(a.X), dense(b.X))
    assert a.var.loc[tfs[0], "grn_level"] == 0 and a.var.loc[tfs[7], "grn_level"] == 3
    assert set(a.var.loc[tfs, "grn_role"]) == {"tf"}
    assert np.isfinite(dense(a.X)).all() and dense(a.X).std(axis=0).max() > 0


def test_cascade_save_load_and_replay_state_round_trip(cascade_trained, tmp_path):
    model, directory, tfs = cascade_trained
    loaded = gg.GroundGAN.load(directory)
    assert loaded.layout.levels == model.layout.levels
    assert np.array_equal(dense(loaded.sample(80, seed=1).X), dense(model.sample(80, seed=1).X))
    state = model.replay_state(80, seed=1)
    state.save(tmp_path / "state.npz")
    again = loaded.perturb({tfs[6]: 0.0}, state=ReplayState.load(tmp_path / "state.npz"))
    first = model.perturb({tfs[6]: 0.0}, n_cells=80, seed=1)
    for name in ("control", f"{tfs[6]}=0"):
        assert np.array_equal(dense(again.mod[name].X), dense(first.mod[name].X))
