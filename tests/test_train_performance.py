"""Speed paths of the training stages: same losses as the plain paths, no host reads, checks."""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from dataclasses import replace

import pytest
import torch

from groundgan.nn import GroundGANModule
from groundgan.train import ControllerStage, GroundGANStage, StageSettings, _performance, _stages
from groundgan.train._performance import PerformanceOptions
from tiny_networks import N_TARGETS, N_TFS, tiny_cells, tiny_module

STEPS = 3


@pytest.fixture(scope="module")
def base_module() -> GroundGANModule:
    return tiny_module()


@pytest.fixture(scope="module")
def cells() -> torch.Tensor:
    return tiny_cells()


def make_stage(stage_cls, module, cells, performance=None, seed: int = 0):
    settings = StageSettings(max_steps=50, batch_size=16, n_critic=2, lr_generator=1e-3)
    rng = torch.Generator().manual_seed(seed)
    return stage_cls(copy.deepcopy(module), cells, settings, rng, performance=performance)


def run(stage, steps: int = STEPS) -> torch.Tensor:
    return torch.stack([stage.step() for _ in range(steps)])


#: Biases of layers followed by BatchNorm: the normalisation removes them, so their gradient is
#: zero up to rounding and AMSGrad turns that rounding noise into lr-sized steps that differ
#: between any two summation orders. They do not change what the networks compute.
BIAS_BEFORE_BATCHNORM = re.compile(r"(hidden\.\d+\.linear\.bias|target_generators\..*\.biases\.)")


def generated(stage) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    m = stage.module
    z = torch.randn(32, m.controller.latent_dim, generator=g)
    with torch.no_grad():
        if isinstance(stage, ControllerStage):
            return m.generate_stage1(z)
        return m.generate(z, torch.randn(32, m.n_targets, generator=g))


def assert_same_training(a, b) -> None:
    torch.testing.assert_close(run(a), run(b), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(a.module.named_parameters(), b.module.parameters(), strict=True):
        if not BIAS_BEFORE_BATCHNORM.search(name):
            torch.testing.assert_close(
                p, q, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
            )
    torch.testing.assert_close(generated(a), generated(b), rtol=1e-4, atol=1e-4)


SINGLE_PATHS = {
    "foreach": {"optimizer": "foreach"},
    "fused": {"optimizer": "fused"},
    "joint_critic_forward": {"joint_critic_forward": True},
    "shared_labeler_pass": {"shared_labeler_pass": True},
    "tf32": {"tf32": True},
}


@pytest.mark.parametrize("stage_cls", [ControllerStage, GroundGANStage], ids=["stage1", "stage2"])
def test_fast_and_plain_paths_give_the_same_training(stage_cls, base_module, cells):
    fast = make_stage(stage_cls, base_module, cells, PerformanceOptions())
    plain = make_stage(stage_cls, base_module, cells, PerformanceOptions.plain())
    assert_same_training(fast, plain)


@pytest.mark.parametrize("path", sorted(SINGLE_PATHS))
def test_each_speed_path_alone_gives_the_same_training(path, base_module, cells):
    plain = PerformanceOptions.plain()
    one = PerformanceOptions.plain(**SINGLE_PATHS[path])
    assert one != plain
    assert_same_training(
        make_stage(GroundGANStage, base_module, cells, one),
        make_stage(GroundGANStage, base_module, cells, plain),
    )


def test_foreach_adamw_is_bitwise_the_loop_on_cpu(base_module, cells):
    a = make_stage(
        GroundGANStage, base_module, cells, PerformanceOptions.plain(optimizer="foreach")
    )
    b = make_stage(GroundGANStage, base_module, cells, PerformanceOptions.plain())
    assert torch.equal(run(a), run(b))


def test_default_is_the_fast_path_with_fused_adamw_on_cpu(base_module, cells):
    stage = make_stage(GroundGANStage, base_module, cells)
    assert stage.performance == PerformanceOptions()
    for optimizer in stage.optimizers().values():
        group = optimizer.param_groups[0]
        assert group["fused"] is True and group["foreach"] is False
        assert group["amsgrad"] is True and group["betas"] == (0.5, 0.9)


def test_optimizer_flags():
    cpu = torch.device("cpu")
    flags = _performance.optimizer_flags
    assert flags(cpu) == {"fused": True, "foreach": False, "capturable": False}
    assert flags(cpu, "foreach") == {"fused": False, "foreach": True, "capturable": False}
    assert flags(cpu, "for-loop") == {"fused": False, "foreach": False, "capturable": False}
    # capturable only on CUDA; off CUDA the fused kernel is the one that takes tensor rates
    assert flags(cpu, cuda_graphs=True) == {"fused": True, "foreach": False, "capturable": False}
    assert _performance.takes_tensor_learning_rate(flags(cpu, cuda_graphs=True))
    assert not _performance.takes_tensor_learning_rate(flags(cpu, "foreach", cuda_graphs=True))
    assert _performance.fused_amsgrad_supported("cpu")  # torch >= 2.4 has fused AMSGrad
    with pytest.raises(ValueError, match="optimizer must be one of"):
        _performance.optimizer_flags(cpu, "turbo")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        PerformanceOptions(optimizer="turbo")


# ------------------------------------------------------------------------------- no host reads
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@pytest.mark.parametrize("optimizer", ["auto", "foreach"])
def test_a_step_reads_nothing_back_to_the_host(optimizer, base_module, cells):
    """Nothing at all with the default (fused) AdamW; with the foreach one, only its step
    counters, which it keeps as host tensors."""
    stage = make_stage(GroundGANStage, base_module, cells, PerformanceOptions(optimizer=optimizer))
    stage.step()  # creates the optimiser state
    counters = {
        id(state["step"]) for o in stage.optimizers().values() for state in o.state.values()
    }
    probe = torch.ones(1)  # shows that the spies are installed
    reads = spy_on_host_reads(lambda: (stage.step(), probe.item()))
    assert reads[-1] == ("item", id(probe))
    step_reads = reads[:-1]
    if optimizer == "auto":
        assert step_reads == []
    else:
        assert step_reads and all(n == "item" and t in counters for n, t in step_reads), reads


def test_step_code_has_no_host_reads():
    source = inspect.getsource(_stages)
    for call in (
        r"\.item\(",
        r"\.tolist\(",
        r"\.cpu\(",
        r"\.numpy\(",
        r"(?<![.\w])float\(",
        r"(?<![.\w])bool\(",
        r"(?<![.\w])int\(",
    ):
        assert not re.search(call, source), call


# ------------------------------------------------------------------------------- capture-ready
def capture_ready_stage(stage_cls, module, cells, **changes):
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device"):
        return make_stage(stage_cls, module, cells, PerformanceOptions(cuda_graphs=True, **changes))


@pytest.mark.parametrize("stage_cls", [ControllerStage, GroundGANStage], ids=["stage1", "stage2"])
def test_capture_ready_step_gives_the_same_training(stage_cls, base_module, cells):
    """The step as a CUDA graph captures it (run eagerly here): gradients zeroed in place,
    learning rates as tensors from the closed-form schedule, fused AdamW."""
    ready = capture_ready_stage(stage_cls, base_module, cells)
    assert ready.captured_step is None  # nothing to capture off CUDA
    assert_same_training(ready, make_stage(stage_cls, base_module, cells, PerformanceOptions()))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_capture_ready_step_reads_nothing_back_to_the_host(precision, base_module, cells):
    """A captured step cannot read back to the host at all: not even AdamW's step counters."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="precision='bf16' on cpu")
        stage = capture_ready_stage(GroundGANStage, base_module, cells, precision=precision)
    stage.step()
    probe = torch.ones(1)  # shows that the spies are installed
    reads = spy_on_host_reads(lambda: (stage.step(), probe.item()))
    assert reads == [("item", id(probe))], reads


def spy_on_host_reads(action) -> list[tuple[str, int]]:
    """Host reads made by ``action``, as (method, id of the tensor read)."""
    reads: list[tuple[str, int]] = []
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def spy_for(name):
        def spy(self, *args, **kwargs):
            reads.append((name, id(self)))
            return originals[name](self, *args, **kwargs)

        return spy

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, spy_for(name))
        action()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return reads


def test_capture_ready_learning_rates_are_tensors_set_in_place(base_module, cells):
    ready = capture_ready_stage(GroundGANStage, base_module, cells)
    plain = make_stage(GroundGANStage, base_module, cells)
    rates = {k: o.param_groups[0]["lr"] for k, o in ready.optimizers().items()}
    assert all(isinstance(lr, torch.Tensor) for lr in rates.values())
    run(ready), run(plain)
    for k, o in ready.optimizers().items():
        assert o.param_groups[0]["lr"] is rates[k]
        assert rates[k].item() == pytest.approx(plain.optimizers()[k].param_groups[0]["lr"])
        assert all(p.grad is not None for p in o.param_groups[0]["params"])  # zeroed, not freed
    ready.fast_forward(40)
    plain.fast_forward(40)
    assert rates["generator"].item() == pytest.approx(
        plain.generator_optimizer.param_groups[0]["lr"]
    )
    assert ready.generator_optimizer.param_groups[0]["lr"] is rates["generator"]


@pytest.mark.parametrize("saved_ready", [True, False])
def test_checkpoints_move_between_eager_and_capture_ready_stages(saved_ready, base_module, cells):
    """Optimiser state is saved with float learning rates, so either kind of stage resumes it
    and continues exactly as the stage that saved it."""

    def new(module):
        if saved_ready:
            return capture_ready_stage(GroundGANStage, module, cells)
        return make_stage(GroundGANStage, module, cells)

    saved = new(base_module)
    run(saved, 2)
    state = copy.deepcopy(saved.state_dict())
    groups = [g for o in state["optimizers"].values() for g in o["param_groups"]]
    assert all(isinstance(g["lr"], float) for g in groups)
    for ready in (True, False):
        resumed = (
            capture_ready_stage(GroundGANStage, saved.module, cells)
            if ready
            else make_stage(GroundGANStage, saved.module, cells)
        )
        resumed.load_state_dict(copy.deepcopy(state))
        lr_kinds = {type(o.param_groups[0]["lr"]) for o in resumed.optimizers().values()}
        assert lr_kinds == ({torch.Tensor} if ready else {float})
        assert torch.isfinite(run(resumed, 1)).all()
    continued, reference = new(saved.module), copy.deepcopy(saved)
    continued.module = reference.module = copy.deepcopy(saved.module)
    continued.load_state_dict(copy.deepcopy(state))
    continued.rng.set_state(saved.rng.get_state())
    torch.testing.assert_close(run(continued, 2), run(reference, 2), rtol=1e-5, atol=1e-6)


def test_cuda_graphs_option_is_checked():
    with pytest.raises(ValueError, match="cuda_graphs must be True or False"):
        PerformanceOptions(cuda_graphs="yes")
    assert not PerformanceOptions.plain().cuda_graphs


# ------------------------------------------------------------------------------- residency
def test_minibatches_come_from_the_stage_generator(base_module, cells):
    stage = make_stage(GroundGANStage, base_module, cells)
    state = stage.rng.get_state()
    batch = stage.real_batch()
    expected = cells[torch.randint(64, (16,), generator=torch.Generator().set_state(state))]
    assert torch.equal(batch, expected)
    assert not torch.equal(stage.rng.get_state(), state)


def test_data_elsewhere_than_the_networks_is_refused(base_module):
    meta_cells = torch.empty(64, N_TFS + N_TARGETS, device="meta")
    with pytest.raises(ValueError, match="random generator is on cpu but the training data"):
        make_stage(GroundGANStage, base_module, meta_cells)
    meta_module = copy.deepcopy(base_module).to("meta")
    with pytest.raises(ValueError, match="move the module"):
        _performance.check_resident(meta_module, torch.zeros(3, 3), torch.Generator())


# ------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("matrix_units", [False, True])
def test_bf16_warns_only_where_it_is_likely_slow(matrix_units, base_module, cells, monkeypatch):
    monkeypatch.setattr(_performance, "cpu_has_bf16_matmul", lambda: matrix_units)
    bf16 = PerformanceOptions(precision="bf16")
    if matrix_units:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            make_stage(GroundGANStage, base_module, cells, bf16)
    else:
        with pytest.warns(RuntimeWarning, match="usually slower than float32"):
            make_stage(GroundGANStage, base_module, cells, bf16)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        PerformanceOptions(precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        _performance.check_precision("fp16", torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:precision='bf16' on cpu")
@pytest.mark.parametrize("stage_cls", [ControllerStage, GroundGANStage])
def test_bf16_autocast_wraps_the_forward_passes(stage_cls, base_module, cells):
    stage = make_stage(stage_cls, base_module, cells, PerformanceOptions(precision="bf16"))
    dtypes = set()
    critic = stage.module.critic if stage_cls is GroundGANStage else stage.module.controller_critic
    hook = critic.output.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype))
    losses = run(stage)
    hook.remove()
    assert dtypes == {torch.bfloat16}
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    assert all(p.dtype == torch.float32 for p in stage.module.parameters())
    for optimizer in stage.optimizers().values():
        for state in optimizer.state.values():
            assert state["exp_avg"].dtype == torch.float32
    reference = run(make_stage(stage_cls, base_module, cells, PerformanceOptions()))
    assert not torch.equal(losses, reference)
    torch.testing.assert_close(losses, reference, rtol=0.05, atol=0.1)


def test_tf32_switch_is_scoped():
    before = torch.get_float32_matmul_precision()
    previous = _performance.enable_tf32()
    assert torch.get_float32_matmul_precision() == "high"
    _performance.restore_tf32(previous)
    assert torch.get_float32_matmul_precision() == before
    with _performance.cuda_matmul_precision(torch.device("cpu"), tf32=True):
        assert torch.get_float32_matmul_precision() == before  # nothing to do off CUDA


# ------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("saved_with", ["for-loop", "fused"])
def test_loaded_optimizer_state_takes_this_stages_implementation(saved_with, base_module, cells):
    saved = make_stage(GroundGANStage, base_module, cells, PerformanceOptions(optimizer=saved_with))
    run(saved, 2)
    state = saved.state_dict()
    resumed = make_stage(
        GroundGANStage, saved.module, cells, replace(PerformanceOptions(), optimizer="foreach")
    )
    resumed.load_state_dict(copy.deepcopy(state))
    for optimizer in resumed.optimizers().values():
        assert optimizer.param_groups[0]["foreach"] is True
        assert optimizer.param_groups[0]["fused"] is False
        for s in optimizer.state.values():
            assert s["step"].device.type == "cpu" and s["step"].dtype == torch.float32
    assert torch.isfinite(run(resumed, 1)).all()
    fused = make_stage(GroundGANStage, saved.module, cells, PerformanceOptions())
    fused.load_state_dict(copy.deepcopy(state))
    assert all(o.param_groups[0]["fused"] for o in fused.optimizers().values())
    assert torch.isfinite(run(fused, 1)).all()
