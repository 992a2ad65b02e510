"""Smoke tests of the speed benchmarks (tiny sizes, CPU) and of the dense masked reference."""

from __future__ import annotations

import copy
import importlib
import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import groundgan as gg
from groundgan.nn import TargetGenerators
from tiny_networks import random_regulators

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--genes", "20", "--tfs", "5", "--tfs-per-target", "3", "--architecture", "tiny"]
TINY += ["--cells", "80", "--device", "cpu", "--threads", "1"]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str):
        return importlib.import_module(name)

    return load


def test_bench_train_stage1(bench, tmp_path):
    out = tmp_path / "s1.json"
    args = ["--stage", "1", "--batch-size", "16", "--steps", "2", "--warmup", "1"]
    result = bench("bench_train").main([*TINY, *args, "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["stage"] == 1 and result["batch_size"] == 16
    block = result["variants"]["block"]
    assert block["steps"] == 2 and block["steps_per_s"] > 0
    assert block["memory"]["peak_rss_bytes_end"] > 0
    assert block["parameters"]["causal_controller"] > 0
    env = result["environment"]
    for key in ("date", "command", "device_name", "torch", "load_1min_before"):
        assert env[key] is not None
    assert env["command"].startswith("python benchmarks/bench_train.py --genes 20")


def test_bench_train_stage2_side_by_side(bench):
    args = ["--stage", "2", "--batch-size", "16", "--steps", "2", "--warmup", "1", "--rounds", "2"]
    args += ["--dense-reference", "--compare-plain", "--profile-groups", "--in-degree", "uniform"]
    result = bench("bench_train").main([*TINY, *args])
    assert set(result["variants"]) == {"block", "block-plain", "dense"}
    for v in result["variants"].values():
        assert v["steps"] == 2 and len(v["steps_per_s_per_round"]) == 2
        assert v["memory"]["optimizer_state"] > 0
    assert result["block_over_dense_steps_per_s"] > 0
    assert result["fast_over_plain_steps_per_s"] > 0
    grn = result["grn"]
    assert grn["targets"] == 15 and grn["in_degree_groups"] == 3
    dense_tg = result["variants"]["dense"]["parameters"]["target_generators"]
    assert dense_tg > result["parameters_block"]["target_generators"]
    profile = result["target_generator_profile"]
    assert len(profile["groups"]) == 3 and profile["gather_ms"] > 0


@pytest.mark.filterwarnings("ignore:cuda_graphs=True on cpu")
def test_bench_train_times_cuda_graphs_beside_eager_steps(bench):
    """Off CUDA the graphs variant runs the capture-ready step eagerly (the same code path)."""
    args = ["--stage", "1", "--batch-size", "16", "--steps", "2", "--rounds", "2"]
    with pytest.raises(SystemExit, match="--cuda-graphs needs --warmup > 3"):
        bench("bench_train").main([*TINY, *args, "--warmup", "3", "--cuda-graphs"])
    result = bench("bench_train").main([*TINY, *args, "--warmup", "4", "--cuda-graphs"])
    assert set(result["variants"]) == {"block", "block-graphs"}
    assert result["variants"]["block-graphs"]["performance"]["cuda_graphs"] is True
    assert result["variants"]["block"]["performance"]["cuda_graphs"] is False
    assert result["graphs_over_eager_steps_per_s"] > 0


def test_bench_train_largest(bench):
    args = ["--largest", "--largest-targets", "15", "--tfs-per-target", "2", "--batch-size", "16"]
    args += ["--steps", "1", "--warmup", "0"]
    result = bench("bench_train").main([*TINY, *args])
    (row,) = result["tried"]
    assert row["status"] == "ok", row
    assert row["edges"] == 30 and row["genes"] == 20
    assert result["largest_edges_trained"] == 30


def test_bench_sample(bench, tmp_path):
    out = tmp_path / "sample.json"
    args = ["--block-sizes", "8", "32", "--cells", "64", "--to-host", "--json", str(out)]
    tiny = [a for a in TINY if a not in ("--cells", "80")]
    result = bench("bench_sample").main([*tiny, *args])
    assert [r["block_size"] for r in result["block_sizes"]] == [8, 32]
    assert all(r["cells_per_s"] > 0 and r["cells"] == 64 for r in result["block_sizes"])
    assert json.loads(out.read_text())["grn"]["edges"] == 45


def test_bench_sample_counts_the_matrix_products_of_a_cell(bench):
    """Two operations per weight of the generation path (controller layers and target
    generators; biases and BatchNorm are elementwise and not counted)."""
    tiny = [a for a in TINY if a not in ("--cells", "80")]
    result = bench("bench_sample").main([*tiny, "--block-sizes", "8", "--cells", "8", "--flops"])
    bt = bench("bench_train")
    regulators = bt.random_grn(5, 15, 3, "fixed", 0)
    depth, width = bt.architecture(bt.parse_args([*TINY]), 45)
    module = bt.build_module(20, 5, regulators, depth, width, 0, "tiny")
    controller = sum(
        m.weight.numel() for m in module.controller.modules() if isinstance(m, torch.nn.Linear)
    )
    generators = sum(
        p.numel()
        for name, p in module.target_generators.named_parameters()
        if ".weights." in name or name.endswith("out_weight")
    )
    assert result["flops_per_cell"] == 2 * (controller + generators)


# ------------------------------------------------------------------------------- dense reference
@pytest.fixture
def block_and_dense(bench):
    dense_reference = bench("dense_reference")
    torch.manual_seed(0)
    regulators = random_regulators(n_tfs=7, n_targets=12, max_degree=5)
    tg = TargetGenerators(regulators, depth=3, width=2.0)
    with torch.no_grad():  # non-trivial biases and BatchNorm affine parameters
        for p in tg.parameters():
            p.add_(0.1 * torch.randn_like(p))
    dense = dense_reference.DenseMaskedTargetGenerators.from_target_generators(tg, n_tfs=7)
    return tg, dense, dense_reference


def inputs(seed: int = 1, batch: int = 64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 7, generator=g) * 5, torch.randn(batch, 12, generator=g)


def test_dense_reference_computes_the_same_function(block_and_dense):
    tg, dense, _ = block_and_dense
    assert len(tg.groups) > 1  # several in-degree groups
    tfs, noise = inputs()
    with torch.no_grad():
        block, reference = tg(tfs, noise), dense(tfs, noise)
        pre_block, pre_dense = tg(tfs, noise, relu=False), dense(tfs, noise, relu=False)
    assert (block > 0).float().mean() > 0.2
    torch.testing.assert_close(reference, block, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pre_dense, pre_block, atol=1e-5, rtol=1e-5)


def test_dense_reference_has_the_same_nonzero_weights(block_and_dense):
    tg, dense, ref = block_and_dense
    nonzero = sum(int((p != 0).sum()) for p in dense.parameters())
    assert nonzero == sum(p.numel() for p in tg.parameters())
    size = ref.dense_size(7, [len(r) for r in ref.block_structure(tg)[0]], depth=3, width=2.0)
    assert size.parameters == sum(p.numel() for p in dense.parameters())
    assert size.nonzero_parameters == nonzero
    assert ref.dense_training_bytes(size)["total"] > 5 * 4 * size.parameters


def test_dense_reference_gradients_and_training_match(block_and_dense):
    """Input gradients agree, and one AdamW step of each keeps them the same function."""
    tg, dense, _ = block_and_dense
    tfs, noise = inputs()
    tfs_b, tfs_d = tfs.clone().requires_grad_(True), tfs.clone().requires_grad_(True)
    target = torch.rand(64, 12) * 3
    losses = []
    for net, x in ((tg, tfs_b), (dense, tfs_d)):
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.5, 0.9), amsgrad=True)
        loss = torch.nn.functional.mse_loss(net(x, noise), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tfs_d.grad, tfs_b.grad, atol=1e-5, rtol=1e-4)
    masks = [*dense.masks(), dense.out_mask]
    weights = [*dense.weights, dense.out_weight]
    assert all(torch.all(w[m == 0] == 0) for w, m in zip(weights, masks, strict=True))
    with torch.no_grad():
        torch.testing.assert_close(dense(*inputs(2)), tg(*inputs(2)), atol=1e-4, rtol=1e-4)


def test_dense_reference_records_and_replays_batch_statistics(block_and_dense):
    _, dense, _ = block_and_dense
    tfs, noise = inputs()
    record: list = []
    with torch.no_grad():
        first = dense(tfs, noise, record=record)
        again = dense(tfs, noise, stats=record)
    assert len(record) == dense.n_bn_layers == 3
    assert torch.equal(first, again)


# ------------------------------------------------------------------------------- GPU suite
def pbmc_record(template: dict, stage: int, device: str, rates: dict[str, float]) -> dict:
    """A train record of the PBMC-sized GRN with the given variants' steps/s (known answers;
    the structure is that of a real record)."""
    record = copy.deepcopy(template)
    record.update(stage=stage, batch_size={1: 128, 2: 1024}[stage], n_critic=5)
    record["architecture"]["labeler_hidden"] = [2000, 2000, 2000]
    record["grn"].update(genes=1000, tfs=63, edges=14055)
    record["environment"].update(device=device, command=f"python {device} {stage}")
    variant = record["variants"]["block"]
    record["variants"] = {
        name: {**copy.deepcopy(variant), "steps_per_s": rate} for name, rate in rates.items()
    }
    if device == "cuda":
        for v in record["variants"].values():
            v["memory"] = {"peak_allocated_bytes": 3 * 2**30}
    return record


@pytest.fixture(scope="module")
def train_record() -> dict:
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench_train = importlib.import_module("bench_train")
        args = ["--stage", "2", "--batch-size", "16", "--steps", "1", "--warmup", "1"]
        return bench_train.main([*TINY, *args])
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_report_targets_judges_gpu_records_only(bench, train_record, tmp_path):
    records = {
        "s2_gpu": pbmc_record(train_record, 2, "cuda", {"block": 300.0, "block-graphs": 420.0}),
        "s1_gpu": pbmc_record(train_record, 1, "cuda", {"block": 900.0}),
        "s1_cpu": pbmc_record(train_record, 1, "cpu", {"block": 5000.0}),  # not an H100
        "tiny": train_record,  # not PBMC-sized: ignored
    }
    for name, record in records.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    (tmp_path / "broken.json").write_text("{")
    rows = {r.target: r for r in bench("report_targets").main([str(tmp_path)])}
    s2 = rows["stage 2 >= 350 steps/s (H100)"]
    assert (s2.figure, s2.meets, s2.variant) == ("420.0 steps/s", "yes", "block-graphs (fp32)")
    s1 = rows["stage 1 >= 1,000 steps/s (H100)"]
    assert (s1.figure, s1.meets) == ("900.0 steps/s", "no")  # the CPU record is not counted
    assert s1.command == "python cuda 1"
    memory = rows["stage 2 peak GPU memory < 4 GB"]
    assert (memory.figure, memory.meets) == ("3.00 GiB", "yes")
    schedule = rows["1,000,000 + 200,000 steps < 1 hour (H100)"]
    hours = (200_000 / 900 + 1_000_000 / 420) / 3600
    assert (schedule.figure, schedule.meets) == (f"{hours:,.2f} h", "yes")
    assert rows["sampling >= 1,000,000 cells/s (H100)"].figure == "no record"


def test_report_targets_marks_cpu_figures(bench, train_record, tmp_path):
    cpu = pbmc_record(train_record, 2, "cpu", {"block": 0.38, "block-plain": 0.33})
    cpu["variants"]["block"]["memory"]["timeline"] = {"peak_live_bytes": 2**30}
    (tmp_path / "s2.json").write_text(json.dumps(cpu))
    rows = {r.target: r for r in bench("report_targets").main([str(tmp_path / "s2.json")])}
    s2 = rows["stage 2 >= 350 steps/s (H100)"]
    assert (s2.figure, s2.meets, s2.variant) == ("0.38 steps/s", "not on a GPU", "block (fp32)")
    memory = rows["stage 2 peak GPU memory < 4 GB"]
    assert (memory.figure, memory.meets) == ("1.00 GiB", "not on a GPU")
    assert memory.variant == "block (live tensors, memory profiler)"


def test_bench_train_counts_flops_in_proportion_to_the_batch(bench):
    def flops(batch: int) -> dict:
        args = ["--stage", "2", "--batch-size", str(batch), "--steps", "1", "--warmup", "1"]
        return bench("bench_train").main([*TINY, *args, "--flops"])["variants"]["block"]["flops"]

    small, large = flops(16), flops(32)
    assert small["per_step"] == sum(small["by_operation"].values()) > 0
    assert {"aten.mm", "aten.addmm", "aten.baddbmm"} <= set(small["by_operation"])
    assert large["per_step"] == 2 * small["per_step"]  # every product is linear in the batch


def test_bench_train_memory_timeline(bench):
    """Peak bytes of live tensors in a step, by category, from torch's memory profiler."""
    args = ["--stage", "2", "--batch-size", "16", "--steps", "1", "--warmup", "1"]
    result = bench("bench_train").main([*TINY, *args, "--memory-timeline"])
    memory = result["variants"]["block"]["memory"]
    timeline = memory["timeline"]
    held = memory["weights_and_buffers"] + memory["optimizer_state"]
    assert timeline["peak_live_bytes"] > held  # and the step's activations on top
    assert timeline["peak_live_bytes"] == sum(timeline["at_peak"].values())
    assert timeline["max_by_category"]["optimizer_state"] == memory["optimizer_state"]
    assert timeline["max_by_category"]["activation"] > 0


def test_gpu_suite_commands_are_valid(bench):
    """Every benchmark command of the GPU suite parses, and the script is valid bash."""
    script = BENCHMARKS / "gpu_suite.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text().replace("\\\n", " ")
    commands = [
        line.split(None, 1)[1].split(";;")[0]
        for line in text.splitlines()
        if line.strip().startswith("run ")
    ]
    assert len(commands) >= 10
    for command in commands:
        words = shlex.split(
            command.replace("$train", "python benchmarks/bench_train.py --device cuda")
        )
        name, script_name, args = words[0], words[2], words[3:]
        module = bench(Path(script_name).stem)
        module.parse_args([*args, "--json", f"{name}.json"])


def test_learning_curve_records_both_stages_against_an_equal_size_control(bench, tmp_path):
    curve = bench("learning_curve")
    record_path = tmp_path / "curve.json"
    argv = ["run", "--data", "pbmc", "--genes", "60", "--k", "3", "--n-test", "100"]
    argv += ["--variant", "fast", "--steps-stage1", "4", "--steps-stage2", "4", "--eval-every"]
    argv += ["2", "--cache", str(tmp_path / "cache"), "--json", str(record_path)]
    argv += ["--model-set", "labeler_hidden=[16]", "controller_hidden=[32,32]"]
    argv += ["critic_hidden=[32,16]", "sample_block_size=64"]
    argv += ["--set", "batch_size_stage2=64", "--save-model", str(tmp_path / "model")]
    argv += ["--set-stage2", "gp_lambda=5"]  # stage 1 keeps the recipe's 10
    curve.main([*argv, "--metric-seeds", "2"])
    record = json.loads(record_path.read_text())
    assert [(p["stage"], p["step"]) for p in record["points"]] == [
        ("stage1", 2),
        ("stage1", 4),
        ("stage2", 2),
        ("stage2", 4),
    ]
    assert record["cells_per_row"] == 50  # the simulated cells and each control half
    assert record["hyperparameters"]["lr_stage1"] == 1e-3  # the fast recipe, resolved
    assert record["hyperparameters"]["gp_lambda"] == 5  # the stage-2 call's
    assert set(record["control"]) == {"cosine", "euclidean", "mmd", "rf_auroc", "milisi"} | {
        "rf_auroc_mean",
        "rf_auroc_sd",
    }
    assert record["control"]["rf_auroc_sd"] > 0  # two metric seeds, two figures
    for scores in [record["control"], *record["points"]]:
        # the record's own seed 0 is one of them
        difference = abs(scores["rf_auroc"] - scores["rf_auroc_mean"])
        assert difference == pytest.approx(scores["rf_auroc_sd"])
    seconds = [p["train_cpu_seconds"] for p in record["points"]]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert (tmp_path / "cache").is_dir()  # the GRN is cached for parallel variants
    assert gg.GroundGAN.load(tmp_path / "model").steps_ == {"stage1": 4, "stage2": 4}
    data_args = argv[1:9] + ["--cache", str(tmp_path / "cache")]
    diagnosis = tmp_path / "diagnosis.json"
    curve.main(
        ["diagnose", *data_args, "--model", str(tmp_path / "model"), "--trees", "10"]
        + ["--metric-seeds", "2", "--counts", "--json", str(diagnosis)]
    )
    result = json.loads(diagnosis.read_text())
    assert result["steps"] == {"stage1": 4, "stage2": 4}
    assert set(result["simulated"]) == set(result["real_vs_real"])
    assert set(result["simulated_as_counts"]) == set(result["simulated"])
    assert result["real_vs_real"]["nonzero_values_below_1pct_of_reference"] < 0.1
    assert result["real_vs_real"]["paper_rf_auroc_sd"] > 0  # two seeds, two figures
    curve.main(["plot", str(record_path), str(record_path), "--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").stat().st_size > 10_000
    table = curve.markdown_table([record])
    assert table.count("\n") == 1 + 1 + len(record["points"])  # header, rule, control, points
    assert table.count("(seeds: ") == 1 + len(record["points"])


def test_diagnosis_finds_small_values_and_shrunken_spread_and_not_real_halves(bench):
    """Known answers on synthetic counts: two samples of one distribution are not told apart;
    cells with small positive values where the reference has zeros, and with half its spread,
    are, by the cell summaries and the spread ratios."""
    diagnosis = bench("realism_diagnosis")
    rng = np.random.default_rng(0)
    profile = rng.gamma(0.5, 1.0, 40)
    counts = rng.poisson(profile * 0.5, size=(600, 40)) + rng.poisson(0.05, size=(600, 40))
    cells = counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4
    reference, same = cells[:300], cells[300:]
    alike = diagnosis.separation(same, reference, seed=0, trees=50)
    assert abs(alike["forest_auroc_cell_summaries"] - 0.5) < 0.1
    assert 0.85 < alike["gene_sd_ratio_median"] < 1.15
    assert alike["nonzero_values_below_1pct_of_reference"] < 0.05
    mean = reference.mean(0)
    blurred = mean + 0.5 * (same - mean) + rng.uniform(0, 1, same.shape)  # small values
    off = diagnosis.separation(blurred, reference, seed=0, trees=50)
    assert off["forest_auroc_cell_summaries"] > 0.95
    assert off["nonzero_values_below_1pct_of_reference"] > 0.2
    assert off["gene_sd_ratio_median"] < 0.6 and off["component_sd_ratio_median"] < 0.7


def test_rounding_to_counts_keeps_expected_values_and_gives_the_real_value_grid(bench):
    diagnosis = bench("realism_diagnosis")
    rng = np.random.default_rng(1)
    profile = rng.gamma(0.5, 1.0, 30)
    cells = np.tile(profile / profile.sum() * 1e4, (4000, 1))
    depths = np.array([20, 50, 80])
    rounded = diagnosis.round_to_counts(cells, depths, seed=0)
    np.testing.assert_allclose(rounded.sum(1), 1e4)
    smallest = np.where(rounded > 0, rounded, np.inf).min(1)
    counts = rounded / smallest[:, None]  # here every cell has a gene of one count
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert abs(counts.sum(1).mean() - depths.mean()) < 1  # rounding keeps the depth on average
    np.testing.assert_allclose(rounded.mean(0), cells[0], rtol=0.1, atol=5)
    same = diagnosis.round_to_counts(cells, depths, seed=0)
    np.testing.assert_array_equal(rounded, same)


def test_learning_curve_n_train_keeps_the_grn_of_all_training_cells(bench, tmp_path):
    """--n-train changes the number of training cells only: the GRN and test cells stay."""
    curve = bench("learning_curve")
    argv = ["run", "--data", "pbmc", "--genes", "60", "--k", "3", "--n-test", "100"]
    argv += ["--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "unused.json")]
    full = curve.prepare(curve.parse_args(argv))
    few = curve.prepare(curve.parse_args([*argv, "--n-train", "200"]))
    assert few["train"].n_obs == 200 and full["train"].n_obs > 200
    assert set(few["train"].obs_names) < set(full["train"].obs_names)
    pd.testing.assert_frame_equal(few["imposed"], full["imposed"])
    assert few["test"].obs_names.equals(full["test"].obs_names)
    with pytest.raises(SystemExit, match="--n-train must be between 1 and"):
        curve.prepare(curve.parse_args([*argv, "--n-train", "100000"]))


def test_recovery_from_simulated_cells_leaves_out_silent_genes(bench, pbmc_grn_cells):
    """Real cells stand in for simulated ones; a target zero in every cell is left out of both
    scores instead of failing GRNBoost2's input check."""
    recovery = bench("grn_recovery")
    cells, grn = pbmc_grn_cells
    silent = grn["target"].iloc[0]
    cells.X = cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X
    cells.X[:, cells.var_names.get_loc(silent)] = 0
    tfs = sorted(set(grn["tf"]))
    negative = grn.assign(tf=grn["tf"].map(dict(zip(tfs, tfs[1:] + tfs[:1], strict=True))))
    imposed, control, n_silent = recovery.recover_from_simulated(cells, grn, negative, seed=0)
    assert n_silent == 1
    assert silent not in set(imposed.per_target.index) | set(control.per_target.index)
    assert imposed.n_edges == (grn["target"] != silent).sum()


# ------------------------------------------------------------------ the reference's step choices
def _stage2(n_critic: int = 2):
    from groundgan.train import GroundGANStage, StageSettings
    from tiny_networks import tiny_cells, tiny_module

    settings = StageSettings(max_steps=10, batch_size=16, n_critic=n_critic)
    return GroundGANStage(tiny_module(), tiny_cells(), settings, torch.Generator().manual_seed(0))


def test_every_step_patch_has_a_learning_curve_variant(bench):
    patches = bench("reference_step").PATCHES
    variants = bench("learning_curve").VARIANTS
    assert {v["patch"] for v in variants.values() if "patch" in v} == set(patches)


def test_reused_real_batch_is_drawn_once_per_step(bench, monkeypatch):
    bench("reference_step").reuse_real_batch(monkeypatch.setattr)
    stage = _stage2(n_critic=2)
    batches = [stage.real_batch() for _ in range(6)]  # two steps: 2 critic + 1 generator each
    assert all(torch.equal(b, batches[0]) for b in batches[:3])
    assert all(torch.equal(b, batches[3]) for b in batches[3:])
    assert not torch.equal(batches[0], batches[3])


def test_reference_initialisation_draws_at_the_dense_layers_scale(bench, monkeypatch):
    reference_step = bench("reference_step")
    tg = TargetGenerators(random_regulators(30, 300, max_degree=8), depth=3, width=2.0)
    outputs = [g.out_weight.clone() for g in tg.groups]
    reference_step.reinitialise_like_reference(tg)
    size = bench("dense_reference").dense_size(
        30, [g.n_regulators for g in tg.groups for _ in range(g.n_genes)], 3, 2.0
    )
    for layer, fan_in in enumerate([size.n_inputs, size.total_hidden, size.total_hidden]):
        weights = torch.cat([g.weights[layer].flatten() for g in tg.groups])
        bound = (6.0 / (fan_in + size.total_hidden)) ** 0.5
        assert weights.abs().max() <= bound
        assert weights.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)  # uniform
    assert all(torch.equal(g.out_weight, o) for g, o in zip(tg.groups, outputs, strict=True))
    # the stage-2 calibration runs after it
    calls = []
    monkeypatch.setattr(reference_step, "reinitialise_like_reference", lambda tg: calls.append(tg))
    reference_step.reference_initialisation(monkeypatch.setattr)
    stage = _stage2()
    stage.calibrate(n_cells=64)
    assert calls == [stage.module.target_generators]


def test_fresh_labeler_cells_generate_once_more_per_step(bench, monkeypatch):
    from groundgan.train import GroundGANStage

    def count_generate(stage):
        calls = []
        generate = GroundGANStage.generate
        monkeypatch.setattr(stage, "generate", lambda n: calls.append(n) or generate(stage, n))
        stage.step()
        return len(calls)

    assert count_generate(_stage2(n_critic=2)) == 3  # 2 critic updates + the generator update
    bench("reference_step").fresh_labeler_cells(monkeypatch.setattr)
    stage = _stage2(n_critic=2)
    labeler = [p.clone() for p in stage.module.labeler.parameters()]
    assert count_generate(stage) == 4
    assert any(
        not torch.equal(p, q)
        for p, q in zip(stage.module.labeler.parameters(), labeler, strict=True)
    )
