"""Sampling speed: cells per second of ``GroundGANModule.generate`` in blocks.

Builds the same synthetic PBMC-size model as ``bench_train.py`` (untrained weights: the cost
of generation does not depend on their values) and generates cells block after block, as
``GroundGAN.sample`` does: per block, the controller's and the target generators' noise are
drawn on the device with one seeded generator, then ``module.generate`` runs in eval mode
under ``torch.no_grad``. With ``--to-host`` each block is also copied to host memory as float32
(what ``sample`` keeps); without it the cells stay on the device.

Usage::

    python benchmarks/bench_sample.py --device cpu --block-sizes 1024 8192 --cells 65536
    python benchmarks/bench_sample.py --device cuda --block-sizes 1024 8192 65536 \\
        --cells 4000000 --to-host --json sample.json

Prints (and with ``--json`` writes) one JSON object: cells/s per block size, the GRN, the
device, torch version, date, load average and the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_train as bt  # noqa: E402

from groundgan.train import _performance  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--tfs", type=int, default=63)
    p.add_argument("--tfs-per-target", type=int, default=15)
    p.add_argument("--depth", default="auto")
    p.add_argument("--width", default="auto")
    p.add_argument("--architecture", choices=sorted(bt.ARCHITECTURES), default="paper")
    p.add_argument("--block-sizes", type=int, nargs="+", default=[1024])
    p.add_argument("--cells", type=int, default=65536, help="cells timed per block size")
    p.add_argument("--warmup-blocks", type=int, default=2)
    p.add_argument("--to-host", action="store_true", help="copy each block to host memory")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--no-tf32", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flops", action="store_true", help="count the operations of one block")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def generate_block(module, block: int, rng: torch.Generator, device, to_host: bool):
    """One block as ``GroundGAN.sample`` draws it."""
    z = torch.randn(block, module.controller.latent_dim, generator=rng, device=device)
    noise = torch.randn(block, module.n_targets, generator=rng, device=device)
    cells = module.generate(z, noise)
    return cells.float().cpu() if to_host else cells


def time_block_size(module, block: int, args, device) -> dict:
    """Cells/s at one block size (``--cells`` rounded up to whole blocks)."""
    rng = torch.Generator(device=device).manual_seed(args.seed)
    n_blocks = max(1, -(-args.cells // block))
    context = _performance.autocast(device, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad(), context:
        for _ in range(args.warmup_blocks):
            generate_block(module, block, rng, device, args.to_host)
        bt.synchronize(device)
        start = time.perf_counter()
        for _ in range(n_blocks):
            generate_block(module, block, rng, device, args.to_host)
        bt.synchronize(device)
        seconds = time.perf_counter() - start
    row = {
        "block_size": block,
        "blocks": n_blocks,
        "cells": n_blocks * block,
        "seconds": seconds,
        "cells_per_s": n_blocks * block / seconds,
    }
    if device.type == "cuda":
        row["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return row


def flops_per_cell(module, device, block: int = 1024) -> float:
    """Floating-point operations of generating one cell (one block of ``block`` cells counted
    with torch's per-operation formulas, divided by ``block``)."""
    rng = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad(), bt.FlopCounter() as counter:
        generate_block(module, block, rng, device, to_host=False)
    return sum(counter.by_operation.values()) / block


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the JSON result (and write it with ``--json``)."""
    args = parse_args(argv)
    device = bt.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    _performance.check_precision(args.precision, device)
    env = bt.environment(device, argv, "bench_sample.py")
    n_targets = args.genes - args.tfs
    regulators = bt.random_grn(args.tfs, n_targets, args.tfs_per_target, "fixed", args.seed)
    depth, width = bt.architecture(args, sum(map(len, regulators)))
    module = bt.build_module(
        args.genes, args.tfs, regulators, depth, width, args.seed, args.architecture
    )
    module.to(device).eval()
    with _performance.cuda_matmul_precision(device, not args.no_tf32):
        rows = [time_block_size(module, b, args, device) for b in args.block_sizes]
    result = {
        "benchmark": "sample",
        "to_host": args.to_host,
        "precision": args.precision,
        "tf32": not args.no_tf32 and device.type == "cuda",
        "architecture": bt.ARCHITECTURES[args.architecture],
        "grn": {
            "genes": args.genes,
            "tfs": args.tfs,
            "targets": n_targets,
            "edges": sum(map(len, regulators)),
            "depth": depth,
            "width": width,
        },
        "block_sizes": rows,
        **({"flops_per_cell": flops_per_cell(module, device)} if args.flops else {}),
        "environment": {**env, "load_1min_after": bt.load_average()},
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
