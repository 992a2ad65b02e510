"""Training speed of GRouNdGAN's stages on a synthetic GRN and synthetic cells.

Builds a :class:`~groundgan.nn.GroundGANModule` of the requested size directly (no AnnData):
``--genes`` genes of which ``--tfs`` are TFs, every other gene a target regulated by
``--tfs-per-target`` TFs drawn at random (seeded), the paper's architecture (controller
128 -> 256 -> 512 -> 1024 -> genes, critics genes -> 1024 -> 512 -> 256 -> 1, labelers
targets -> 2000 x 3 -> TFs; target generators by the paper's rule: depth 3 / width 2 up to
5,000 edges, depth 2 / width 1 above) and ``--cells`` synthetic library-size-normalised cells
resident on the device. It then times training steps (one generator update and ``--n-critic``
critic updates each) through :func:`groundgan.train.run_stage`, the loop ``GroundGAN.train``
uses.

Variants timed side by side in one run (same initial weights, same seed):

* ``block``: the block-diagonal target generators with the default speed paths;
* ``block-plain`` (``--compare-plain``): the same with every speed path off;
* ``block-graphs`` (``--cuda-graphs``): the ``block`` variant with whole steps captured in
  CUDA graphs (its warm-up must cover the graph's three eager steps and the capture);
* ``dense`` (``--dense-reference``, stage 2): the reference implementation's dense masked
  target generators (``dense_reference.py``), built from the block network's weights.

On the CPU the variants are built together and timed in alternating rounds (``--rounds``), so
that a changing machine load affects them alike; on CUDA one after the other, each alone in
memory (so that its peak memory is its own).

Usage::

    python benchmarks/bench_train.py --stage 2 --device cpu --steps 6 --warmup 1 --json s2.json
    python benchmarks/bench_train.py --stage 2 --genes 300 --tfs 30 --tfs-per-target 10 \\
        --dense-reference --device cpu --steps 4 --warmup 1 --json dense.json
    python benchmarks/bench_train.py --stage 2 --device cuda --steps 2000 --warmup 200
    python benchmarks/bench_train.py --stage 1 --device cuda --steps 5000 --warmup 200 --cuda-graphs
    python benchmarks/bench_train.py --largest --device cuda --tfs 600 --tfs-per-target 25

Prints (and with ``--json`` writes) one JSON object: steps/s per variant, peak memory
(``torch.cuda.max_memory_allocated`` on CUDA; the process's peak RSS on the CPU), bytes of
weights, gradients and optimiser state, parameter counts per network, the GRN, the device,
torch version, date, load average and the command line.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from dense_reference import (  # noqa: E402
    DenseMaskedTargetGenerators,
    dense_size,
    dense_training_bytes,
)

from groundgan.nn import GroundGANModule, paper_depth_width  # noqa: E402
from groundgan.train import ControllerStage, GroundGANStage, StageSettings, run_stage  # noqa: E402
from groundgan.train._graphs import DEFAULT_WARMUP_STEPS  # noqa: E402
from groundgan.train._performance import PerformanceOptions  # noqa: E402

LIBRARY_SIZE = 20_000.0
PAPER_BATCH = {1: 128, 2: 1024}
PAPER_STEPS = {1: 200_000, 2: 1_000_000}
ARCHITECTURES = {
    "paper": {
        "latent_dim": 128,
        "controller_hidden": (256, 512, 1024),
        "critic_hidden": (1024, 512, 256),
        "labeler_hidden": (2000, 2000, 2000),
    },
    # for smoke tests only
    "tiny": {
        "latent_dim": 8,
        "controller_hidden": (16, 16),
        "critic_hidden": (16, 8),
        "labeler_hidden": (16,),
    },
}
DEFAULT_LARGEST_TARGETS = (1_000, 2_500, 5_000, 10_000, 20_000, 40_000)


# ----------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", type=int, choices=(1, 2), default=2)
    p.add_argument("--genes", type=int, default=1000, help="genes per cell (TFs + targets)")
    p.add_argument("--tfs", type=int, default=63)
    p.add_argument("--tfs-per-target", type=int, default=15)
    p.add_argument(
        "--in-degree",
        choices=("fixed", "uniform"),
        default="fixed",
        help="fixed: every target has --tfs-per-target TFs; uniform: 1 to that many",
    )
    p.add_argument("--depth", default="auto")
    p.add_argument("--width", default="auto")
    p.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="paper")
    p.add_argument("--batch-size", type=int, default=None, help="default: paper's (128 / 1024)")
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--cells", type=int, default=4096, help="synthetic training cells")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--rounds", type=int, default=None, help="CPU: alternate variants in rounds")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--dense-reference", action="store_true", help="also time the dense form")
    p.add_argument("--compare-plain", action="store_true", help="also time the plain paths")
    p.add_argument("--plain", action="store_true", help="the block variant without speed paths")
    p.add_argument(
        "--cuda-graphs", action="store_true", help="also time the block variant in CUDA graphs"
    )
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--no-tf32", action="store_true")
    p.add_argument("--optimizer", default="auto", choices=("auto", "fused", "foreach", "for-loop"))
    p.add_argument("--profile-groups", action="store_true", help="gather vs bmm of the TGs")
    p.add_argument(
        "--flops", action="store_true", help="count the floating-point operations of a step"
    )
    p.add_argument(
        "--memory-timeline",
        action="store_true",
        help="peak bytes of live tensors in one step of the first variant, by category",
    )
    p.add_argument("--largest", action="store_true", help="grow the GRN until memory runs out")
    p.add_argument("--largest-targets", type=int, nargs="+", default=list(DEFAULT_LARGEST_TARGETS))
    p.add_argument("--memory-limit-gb", type=float, default=None)
    p.add_argument("--largest-timeout", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = PAPER_BATCH[args.stage]
    if args.rounds is None:
        args.rounds = 3
    return args


# ----------------------------------------------------------------------------- environment
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def environment(device: torch.device, argv: list[str] | None, script: str) -> dict:
    """Where and when the figures were measured."""
    import groundgan

    args = sys.argv[1:] if argv is None else argv
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python benchmarks/{script} {shlex.join(args)}".strip(),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "groundgan": groundgan.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "load_1min_before": load_average(),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------- the model
def random_grn(
    n_tfs: int, n_targets: int, per_target: int, in_degree: str, seed: int
) -> list[list[int]]:
    """Regulators of each target (indices among the TFs), drawn at random."""
    if not 1 <= per_target <= n_tfs:
        raise ValueError(f"--tfs-per-target must be in 1..{n_tfs}, got {per_target}")
    rng = np.random.default_rng(seed)
    degrees = (
        np.full(n_targets, per_target)
        if in_degree == "fixed"
        else rng.integers(1, per_target + 1, size=n_targets)
    )
    return [sorted(rng.choice(n_tfs, size=int(d), replace=False).tolist()) for d in degrees]


def architecture(args: argparse.Namespace, n_edges: int) -> tuple[int, float]:
    """Depth and width of the target generators (the paper's rule unless given)."""
    return paper_depth_width(n_edges, args.depth, args.width)


def build_module(
    n_genes: int,
    n_tfs: int,
    regulators: list[list[int]],
    depth: int,
    width: float,
    seed: int,
    architecture: str = "paper",
) -> GroundGANModule:
    """The paper's networks for a GRN whose TFs are the first ``n_tfs`` genes."""
    torch.manual_seed(seed)
    return GroundGANModule(
        n_genes=n_genes,
        tf_index=list(range(n_tfs)),
        target_index=list(range(n_tfs, n_genes)),
        regulators=regulators,
        depth=depth,
        width=width,
        library_size=LIBRARY_SIZE,
        **ARCHITECTURES[architecture],
    )


def synthetic_cells(n_cells: int, n_genes: int, device: torch.device, seed: int) -> torch.Tensor:
    """Sparse-ish positive cells normalised to the library size, created on ``device``."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.5, 1.0, size=n_genes) + 1e-3
    counts = rng.poisson(rates * 5.0, size=(n_cells, n_genes)).astype(np.float32)
    counts[:, 0] += 1.0  # no empty cell
    cells = counts / counts.sum(1, keepdims=True) * LIBRARY_SIZE
    return torch.from_numpy(cells.astype(np.float32)).to(device)


def parameter_counts(module: torch.nn.Module) -> dict[str, int]:
    """Parameters per network (the target generators counted as built, dense or block)."""
    parts = {
        "causal_controller": module.controller,
        "controller_critic": module.controller_critic,
        "target_generators": module.target_generators,
        "critic": module.critic,
        "labeler": module.labeler,
        "antilabeler": module.antilabeler,
    }
    counts = {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One formulation timed in the run."""

    name: str
    dense: bool
    performance: PerformanceOptions
    stage: object = None
    module: torch.nn.Module | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0
    rounds: list[float] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    flops: dict | None = None
    memory_timeline: dict | None = None


def variants(args: argparse.Namespace) -> list[Variant]:
    """The variants asked for, the block one first."""
    fast = PerformanceOptions(
        precision=args.precision, tf32=not args.no_tf32, optimizer=args.optimizer
    )
    plain = PerformanceOptions.plain()
    out = [Variant("block-plain" if args.plain else "block", False, plain if args.plain else fast)]
    if args.compare_plain and not args.plain:
        out.append(Variant("block-plain", False, plain))
    if args.cuda_graphs:
        if args.warmup <= DEFAULT_WARMUP_STEPS:
            raise SystemExit(
                f"--cuda-graphs needs --warmup > {DEFAULT_WARMUP_STEPS} (the graph's eager "
                "warm-up steps and its capture are not to be timed)"
            )
        out.append(Variant("block-graphs", False, replace(out[0].performance, cuda_graphs=True)))
    if args.dense_reference:
        if args.stage != 2:
            raise SystemExit("--dense-reference applies to stage 2 (the target generators)")
        out.append(Variant("dense", True, out[0].performance))
    return out


def build_stage(
    variant: Variant,
    base: GroundGANModule,
    data: torch.Tensor,
    args: argparse.Namespace,
    settings: StageSettings,
) -> None:
    """A fresh copy of the initial networks (kept on the host) on the data's device, and its
    stage, seeded alike for every variant."""
    module = copy.deepcopy(base)
    if variant.dense:
        module.target_generators = DenseMaskedTargetGenerators.from_target_generators(
            module.target_generators, module.n_tfs
        )
    module.to(data.device)
    rng = torch.Generator(device=data.device).manual_seed(args.seed)
    cls = ControllerStage if args.stage == 1 else GroundGANStage
    variant.module = module
    variant.stage = cls(module, data, settings, rng, performance=variant.performance)
    variant.parameters = parameter_counts(module)


def run_steps(variant: Variant, n: int, device: torch.device) -> tuple[float, float]:
    """Train ``n`` more steps; wall-clock and process CPU seconds (device synchronised)."""
    stage = variant.stage
    start = stage.completed_steps
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run_stage(stage, start, start + n, log_every=max(n, 1), progress_bar=False)
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def state_bytes(variant: Variant) -> dict[str, int]:
    """Bytes of weights (and masks), gradients and optimiser state held by the variant."""

    def nbytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    module, stage = variant.module, variant.stage
    weights = nbytes(module.parameters()) + nbytes(module.buffers())
    grads = nbytes(p.grad for p in module.parameters())
    optim = sum(
        nbytes(value for state in o.state.values() for value in state.values())
        for o in stage.optimizers().values()
    )
    return {"weights_and_buffers": weights, "gradients": grads, "optimizer_state": optim}


def time_interleaved(
    vs: list[Variant], args: argparse.Namespace, device: torch.device, build
) -> None:
    """CPU: all variants alive; warm-up, then ``--rounds`` alternating timed rounds."""
    for v in vs:
        build(v)
        run_steps(v, args.warmup, device)
        v.memory = {"peak_rss_bytes_after_warmup": peak_rss_bytes(), **state_bytes(v)}
        if v is vs[0]:
            profile_step(v, args, device)
    per_round = [
        args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)
    ]
    for n in per_round:
        if n == 0:
            continue
        for v in vs:
            wall, cpu = run_steps(v, n, device)
            v.seconds, v.cpu_seconds, v.steps = v.seconds + wall, v.cpu_seconds + cpu, v.steps + n
            v.rounds.append(n / wall)
    for v in vs:
        v.memory["peak_rss_bytes_end"] = peak_rss_bytes()


def time_sequential(
    vs: list[Variant], args: argparse.Namespace, device: torch.device, build
) -> None:
    """CUDA: each variant alone in memory: build, warm up, time, measure, free."""
    for v in vs:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        build(v)
        run_steps(v, args.warmup, device)
        if v is vs[0]:
            profile_step(v, args, device)
        wall, cpu = run_steps(v, args.steps, device)
        v.seconds, v.cpu_seconds, v.steps, v.rounds = wall, cpu, args.steps, [args.steps / wall]
        v.memory = {
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "peak_allocated_bytes_excluding_data": torch.cuda.max_memory_allocated(device) - before,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
            **state_bytes(v),
        }
        v.stage = v.module = None


class FlopCounter(TorchDispatchMode):
    """Floating-point operations of every dispatched operation that torch's flop counter knows
    (matrix products, batched and not, convolutions, attention), backward passes included."""

    def __init__(self):
        super().__init__()
        self.by_operation: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            shapes = tree_map(_shape, (args, kwargs, out))
            flops = count(*shapes[0], **shapes[1], out_val=shapes[2])
            name = str(func._overloadpacket)
            self.by_operation[name] = self.by_operation.get(name, 0) + flops
        return out


def _shape(x):
    return x.shape if isinstance(x, torch.Tensor) else x


def profile_step(variant: Variant, args: argparse.Namespace, device: torch.device) -> None:
    """The extra one-step measurements asked for (``--flops``, ``--memory-timeline``), each on
    a step of its own after the warm-up."""
    if args.flops:
        variant.flops = count_flops(variant, device)
    if args.memory_timeline:
        variant.memory_timeline = memory_timeline(variant, device)


def count_flops(variant: Variant, device: torch.device) -> dict:
    """Floating-point operations of one more step of ``variant`` (torch's per-operation flop
    formulas; elementwise operations are not counted)."""
    with FlopCounter() as counter:
        run_steps(variant, 1, device)
    return {
        "per_step": sum(counter.by_operation.values()),
        "by_operation": dict(sorted(counter.by_operation.items(), key=lambda kv: -kv[1])),
    }


#: Columns of torch's memory timeline after the leading zero column, in torch's order.
TIMELINE_CATEGORIES = (
    "parameter",
    "optimizer_state",
    "input",
    "temporary",
    "activation",
    "gradient",
    "autograd_detail",
    "unknown",
)


def memory_timeline(variant: Variant, device: torch.device) -> dict:
    """Peak bytes of live tensors on ``device`` during one more step of ``variant``, from
    torch's memory profiler (tensors only: no allocator caching or rounding, no cuBLAS
    workspace), with the categories at that moment and each category's own maximum.

    On the CPU this estimates what ``torch.cuda.max_memory_allocated`` would report for the
    same step on a GPU; the training data and the weights count as they exist before the step.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(
        activities=activities, profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        run_steps(variant, 1, device)
    where = "cpu"
    if device.type == "cuda":
        where = f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"
    if not hasattr(prof, "export_memory_timeline"):
        raise SystemExit("--memory-timeline needs torch.profiler's export_memory_timeline")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # deprecated in favour of CUDA memory snapshots, which do not see the CPU
        warnings.filterwarnings("ignore", "`export_memory_timeline` is deprecated")
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), where)
        _, sizes = json.loads(path.read_text())
    rows = [row[1 : 1 + len(TIMELINE_CATEGORIES)] for row in sizes]
    peak = max(range(len(rows)), key=lambda i: sum(rows[i]))
    return {
        "peak_live_bytes": sum(rows[peak]),
        "at_peak": dict(zip(TIMELINE_CATEGORIES, rows[peak], strict=True)),
        "max_by_category": {
            c: max(row[i] for row in rows) for i, c in enumerate(TIMELINE_CATEGORIES)
        },
        "source": "torch.profiler memory timeline of one step after the warm-up",
    }


def variant_report(v: Variant, stage: int) -> dict:
    rate = v.steps / v.seconds if v.seconds else None
    return {
        "performance": dataclasses.asdict(v.performance),
        "steps": v.steps,
        "seconds": v.seconds,
        "steps_per_s": rate,
        "cpu_seconds_per_step": v.cpu_seconds / v.steps if v.steps else None,
        "steps_per_s_per_round": v.rounds,
        "hours_for_paper_steps": PAPER_STEPS[stage] / rate / 3600 if rate else None,
        "memory": {
            **v.memory,
            **({"timeline": v.memory_timeline} if v.memory_timeline is not None else {}),
        },
        "parameters": v.parameters,
        **({"flops": v.flops} if v.flops is not None else {}),
    }


# ----------------------------------------------------------------------------- profiling
def profile_target_generators(
    module: GroundGANModule, batch: int, device: torch.device, repeats: int = 7
) -> dict:
    """Time of the target generators' input gather vs their per-group MLPs, at ``batch``
    (median over ``repeats`` calls, milliseconds)."""
    tg = module.target_generators
    g = torch.Generator(device=device).manual_seed(0)
    tfs = torch.rand(batch, module.n_tfs, generator=g, device=device) * 50
    noise = torch.randn(batch, module.n_targets, generator=g, device=device)

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e3

    rows = tg.input_rows(tfs, noise)
    inputs = [tg.group_inputs(i, rows) for i in range(len(tg.groups))]

    def gather():
        rows = tg.input_rows(tfs, noise)
        for i in range(len(tg.groups)):
            tg.group_inputs(i, rows)

    def groups():
        for group, x in zip(tg.groups, inputs, strict=True):
            group(x)

    def forward_backward():
        tg(tfs, noise).sum().backward()

    with torch.no_grad():
        ms = {"gather_ms": timed(gather), "group_mlps_ms": timed(groups)}
        ms["forward_ms"] = timed(lambda: tg(tfs, noise))
    ms["forward_backward_ms"] = timed(forward_backward)
    ms["reassembly_ms"] = ms["forward_ms"] - ms["gather_ms"] - ms["group_mlps_ms"]
    ms["gather_fraction_of_forward"] = ms["gather_ms"] / ms["forward_ms"]
    ms["groups"] = [
        {"genes": g_.n_genes, "regulators": g_.n_regulators, "hidden": g_.hidden_width}
        for g_ in tg.groups
    ]
    return ms


# ----------------------------------------------------------------------------- the run
def grn_report(n_genes, n_tfs, regulators, depth, width, module) -> dict:
    degrees = [len(r) for r in regulators]
    size = dense_size(n_tfs, degrees, depth, width)
    per_arch = {}
    for d, w in ((depth, width), (3, 2.0)):
        s = dense_size(n_tfs, degrees, d, w)
        b = dense_training_bytes(s)
        per_arch[f"depth{d}_width{w:g}"] = {
            "total_hidden": s.total_hidden,
            "parameters": s.parameters,
            "nonzero_parameters": s.nonzero_parameters,
            "training_bytes": b,
        }
    return {
        "genes": n_genes,
        "tfs": n_tfs,
        "targets": len(regulators),
        "edges": int(sum(degrees)),
        "in_degree_groups": len(module.target_generators.groups),
        "depth": depth,
        "width": width,
        "dense_hidden_units": size.total_hidden,
        "dense_form": per_arch,
    }


def benchmark(args: argparse.Namespace, argv: list[str] | None) -> dict:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(device, argv, "bench_train.py")
    n_targets = args.genes - args.tfs
    regulators = random_grn(args.tfs, n_targets, args.tfs_per_target, args.in_degree, args.seed)
    depth, width = architecture(args, sum(map(len, regulators)))
    if args.memory_limit_gb and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gb * 2**30 / total))
    base = build_module(
        args.genes, args.tfs, regulators, depth, width, args.seed, args.architecture
    )
    data = synthetic_cells(args.cells, args.genes, device, args.seed)
    settings = StageSettings(
        max_steps=PAPER_STEPS[args.stage], batch_size=args.batch_size, n_critic=args.n_critic
    )
    vs = variants(args)

    def build(v: Variant) -> None:
        build_stage(v, base, data, args, settings)

    result = {
        "benchmark": "train",
        "stage": args.stage,
        "architecture": ARCHITECTURES[args.architecture],
        "batch_size": args.batch_size,
        "n_critic": args.n_critic,
        "grn": grn_report(args.genes, args.tfs, regulators, depth, width, base),
        "parameters_block": parameter_counts(base),
        "environment": env,
    }
    if args.profile_groups and args.stage == 2:
        result["target_generator_profile"] = profile_target_generators(
            copy.deepcopy(base).to(device), args.batch_size, device
        )
    timer = time_sequential if device.type == "cuda" else time_interleaved
    timer(vs, args, device, build)
    result["variants"] = {v.name: variant_report(v, args.stage) for v in vs}
    rates = {k: r["steps_per_s"] for k, r in result["variants"].items()}
    if "dense" in rates:
        result["block_over_dense_steps_per_s"] = rates[vs[0].name] / rates["dense"]
    if "block-plain" in rates and "block" in rates:
        result["fast_over_plain_steps_per_s"] = rates["block"] / rates["block-plain"]
    if "block-graphs" in rates:
        result["graphs_over_eager_steps_per_s"] = rates["block-graphs"] / rates[vs[0].name]
    result["environment"]["load_1min_after"] = load_average()
    return result


# ----------------------------------------------------------------------------- largest GRN
def largest(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """Grow the number of targets (``--tfs-per-target`` TFs each) until a size fails.

    Each size runs in its own process (stage 2, ``--steps`` steps after ``--warmup``) so that
    its peak memory is its own and an out-of-memory error ends only that try. With
    ``--memory-limit-gb`` the child is held to that much memory (CUDA: the allocator's
    per-process fraction; CPU: the address-space limit).
    """
    device = resolve_device(args.device)
    env = environment(device, argv, "bench_train.py")
    rows = []
    for n_targets in args.largest_targets:
        row = try_size(args, device, n_targets)
        rows.append(row)
        if row["status"] != "ok":
            break
    fitting = [r for r in rows if r["status"] == "ok"]
    return {
        "benchmark": "train-largest",
        "memory_limit_gb": args.memory_limit_gb,
        "tfs": args.tfs,
        "tfs_per_target": args.tfs_per_target,
        "batch_size": args.batch_size,
        "tried": rows,
        "largest_edges_trained": max((r["edges"] for r in fitting), default=None),
        "environment": {**env, "load_1min_after": load_average()},
    }


def try_size(args: argparse.Namespace, device: torch.device, n_targets: int) -> dict:
    n_genes = n_targets + args.tfs
    row = {"targets": n_targets, "genes": n_genes, "edges": n_targets * args.tfs_per_target}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "size.json"
        cmd = [
            sys.executable, str(Path(__file__).resolve()),
            "--stage", "2", "--genes", str(n_genes), "--tfs", str(args.tfs),
            "--tfs-per-target", str(args.tfs_per_target), "--batch-size", str(args.batch_size),
            "--n-critic", str(args.n_critic), "--cells", str(args.cells),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--rounds", "1",
            "--device", str(device), "--seed", str(args.seed), "--json", str(out),
            "--architecture", args.architecture,
        ]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.memory_limit_gb and device.type == "cuda":
            cmd += ["--memory-limit-gb", str(args.memory_limit_gb)]
        limit = args.memory_limit_gb if device.type == "cpu" else None
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.largest_timeout,
                preexec_fn=(lambda: _limit_address_space(limit)) if limit else None,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {**row, "status": f"timeout after {args.largest_timeout:g} s"}
        row["wall_seconds"] = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            return {**row, "status": failure_status(proc)}
        child = json.loads(out.read_text())
    v = child["variants"]["block"]
    return {
        **row,
        "status": "ok",
        "steps_per_s": v["steps_per_s"],
        "memory": v["memory"],
        "parameters": child["parameters_block"],
    }


def _limit_address_space(gigabytes: float) -> None:
    limit = int(gigabytes * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def failure_status(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr or ""
    if "out of memory" in err.lower() or "MemoryError" in err or "DefaultCPUAllocator" in err:
        return "out of memory"
    tail = err.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return f"failed: {tail[0][:300]}"


# ----------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the JSON result (and write it with ``--json``)."""
    args = parse_args(argv)
    result = largest(args, argv) if args.largest else benchmark(args, argv)
    text = json.dumps(result, indent=2, default=_jsonable)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return result


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
