"""The speed targets against benchmark records, as a Markdown table.

Reads the JSON records of ``bench_train.py`` and ``bench_sample.py`` (files, or directories
searched for ``*.json``), picks for each target of the speed work the records that measure it
(the PBMC-sized GRN: 1,000 genes, 63 TFs, 15 TFs per target; the paper's architecture and
batch sizes) and prints one row per target: the best figure, whether it meets the target,
the variant, device, date and command that gave it. The targets are for an H100; a figure
from another device is shown, but not counted as meeting its target.

Usage::

    python benchmarks/report_targets.py results/gpu/ > targets.md
    python benchmarks/report_targets.py s1.json s2.json sample.json --json targets.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

#: The PBMC-sized synthetic GRN of the benchmarks.
PBMC_GRN = {"genes": 1000, "tfs": 63, "edges": 14055}
PAPER_BATCH = {1: 128, 2: 1024}
PAPER_STEPS = {1: 200_000, 2: 1_000_000}
GPU_TARGETS = ("cuda",)


@dataclass
class Row:
    """One target and what the records say of it."""

    target: str
    figure: str = "no record"
    meets: str = "-"
    variant: str = ""
    device: str = ""
    date: str = ""
    command: str = ""


@dataclass
class Candidate:
    """A measured value, and where it comes from."""

    value: float
    variant: str
    record: dict


# ----------------------------------------------------------------------------- reading
def load_records(paths: Iterable[Path]) -> list[dict]:
    """Every JSON record among ``paths`` (directories are searched recursively)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    records = []
    for file in files:
        try:
            record = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"skipping {file}: {err}", file=sys.stderr)
            continue
        if isinstance(record, dict) and "benchmark" in record:
            records.append(record)
    return records


def is_pbmc_train(record: dict, stage: int) -> bool:
    grn = record.get("grn", {})
    return (
        record.get("benchmark") == "train"
        and record.get("stage") == stage
        and record.get("batch_size") == PAPER_BATCH[stage]
        and record.get("n_critic") == 5
        and record.get("architecture", {}).get("labeler_hidden") == [2000, 2000, 2000]
        and all(grn.get(k) == v for k, v in PBMC_GRN.items())
    )


def is_pbmc_sample(record: dict) -> bool:
    grn = record.get("grn", {})
    return record.get("benchmark") == "sample" and all(grn.get(k) == v for k, v in PBMC_GRN.items())


def device_of(record: dict) -> str:
    return record.get("environment", {}).get("device", "")


# ----------------------------------------------------------------------------- candidates
def train_rates(records: list[dict], stage: int) -> list[Candidate]:
    """Steps/s of every groundgan variant (not the dense reference) at PBMC size."""
    return [
        Candidate(v["steps_per_s"], f"{name} ({v['performance']['precision']})", r)
        for r in records
        if is_pbmc_train(r, stage)
        for name, v in r.get("variants", {}).items()
        if name != "dense" and v.get("steps_per_s")
    ]


def stage2_peak_memory(records: list[dict]) -> list[Candidate]:
    """Peak memory of the fp32 ``block`` variants in stage 2 at PBMC size (bytes): CUDA's
    peak allocation, or else the peak of live tensors from a ``--memory-timeline`` run."""
    out = []
    for r in records:
        if not is_pbmc_train(r, 2):
            continue
        for name, v in r.get("variants", {}).items():
            if not name.startswith("block") or v["performance"]["precision"] != "fp32":
                continue
            memory = v.get("memory", {})
            if "peak_allocated_bytes" in memory:
                out.append(Candidate(memory["peak_allocated_bytes"], name, r))
            elif "timeline" in memory:
                peak = memory["timeline"]["peak_live_bytes"]
                out.append(Candidate(peak, f"{name} (live tensors, memory profiler)", r))
    return out


def sampling_rates(records: list[dict]) -> list[Candidate]:
    return [
        Candidate(
            row["cells_per_s"],
            f"blocks of {row['block_size']}{', to host' if r.get('to_host') else ''}",
            r,
        )
        for r in records
        if is_pbmc_sample(r)
        for row in r.get("block_sizes", [])
    ]


def largest_grns(records: list[dict], limit_gb: float = 16.0) -> list[Candidate]:
    return [
        Candidate(r["largest_edges_trained"], f"{r['tfs_per_target']} TFs per target", r)
        for r in records
        if r.get("benchmark") == "train-largest"
        and r.get("memory_limit_gb") is not None
        and r["memory_limit_gb"] <= limit_gb
        and r.get("largest_edges_trained")
    ]


def dense_ratios(records: list[dict]) -> list[Candidate]:
    return [
        Candidate(r["block_over_dense_steps_per_s"], f"{r['grn']['genes']} genes", r)
        for r in records
        if r.get("benchmark") == "train" and "block_over_dense_steps_per_s" in r
    ]


# ----------------------------------------------------------------------------- rows
def best_row(
    target: str,
    candidates: list[Candidate],
    formatted: Callable[[float], str],
    meets: Callable[[float], bool] | None,
    lower_is_better: bool = False,
) -> Row:
    """The row of the best candidate on a GPU, else the best on any device."""
    if not candidates:
        return Row(target)
    on_gpu = [c for c in candidates if device_of(c.record) in GPU_TARGETS]
    pool = on_gpu or candidates
    best = (min if lower_is_better else max)(pool, key=lambda c: c.value)
    device = device_of(best.record)
    env = best.record.get("environment", {})
    if meets is None:
        verdict = "measured"
    elif device not in GPU_TARGETS:
        verdict = "not on a GPU"
    else:
        verdict = "yes" if meets(best.value) else "no"
    return Row(
        target,
        formatted(best.value),
        verdict,
        best.variant,
        f"{device} ({env.get('device_name', '?')})",
        env.get("date", ""),
        env.get("command", ""),
    )


def paper_schedule_row(records: list[dict]) -> Row:
    """1,000,000 stage-2 + 200,000 stage-1 steps at the best rates on one device kind."""
    target = "1,000,000 + 200,000 steps < 1 hour (H100)"
    for device in (*GPU_TARGETS, "cpu"):
        s1 = [c for c in train_rates(records, 1) if device_of(c.record) == device]
        s2 = [c for c in train_rates(records, 2) if device_of(c.record) == device]
        if s1 and s2:
            b1, b2 = max(s1, key=lambda c: c.value), max(s2, key=lambda c: c.value)
            hours = (PAPER_STEPS[1] / b1.value + PAPER_STEPS[2] / b2.value) / 3600
            return Row(
                target,
                f"{hours:,.2f} h",
                ("yes" if hours < 1 else "no") if device in GPU_TARGETS else "not on a GPU",
                f"stage 1 {b1.variant}, stage 2 {b2.variant}",
                device,
                b2.record.get("environment", {}).get("date", ""),
                "from the two rates above",
            )
    return Row(target)


def rate(value: float) -> str:
    """Three significant digits below 100, one decimal above."""
    return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"


def report(records: list[dict]) -> list[Row]:
    gib = 2**30
    return [
        best_row(
            "stage 2 >= 350 steps/s (H100)",
            train_rates(records, 2),
            lambda v: f"{rate(v)} steps/s",
            lambda v: v >= 350,
        ),
        best_row(
            "stage 1 >= 1,000 steps/s (H100)",
            train_rates(records, 1),
            lambda v: f"{rate(v)} steps/s",
            lambda v: v >= 1000,
        ),
        best_row(
            "stage 2 peak GPU memory < 4 GB",
            stage2_peak_memory(records),
            lambda v: f"{v / gib:.2f} GiB",
            lambda v: v < 4e9,
            lower_is_better=True,
        ),
        paper_schedule_row(records),
        best_row(
            "sampling >= 1,000,000 cells/s (H100)",
            sampling_rates(records),
            lambda v: f"{v:,.0f} cells/s",
            lambda v: v >= 1e6,
        ),
        best_row(
            "largest GRN trained in < 16 GB >= 250,000 edges",
            largest_grns(records),
            lambda v: f"{v:,.0f} edges",
            lambda v: v >= 250_000,
        ),
        best_row(
            "CPU stage 2: block-diagonal over dense masked, side by side",
            dense_ratios(records),
            lambda v: f"{v:.2f}x",
            None,
        ),
    ]


def markdown(rows: list[Row]) -> str:
    header = "| target | figure | meets | variant | device | date | command |"
    lines = [header, "|" + "---|" * 7]
    for r in rows:
        command = f"`{r.command}`" if r.command.startswith("python") else r.command
        cells = (r.target, r.figure, r.meets, r.variant, r.device, r.date, command)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", type=Path, nargs="+", help="JSON records or directories of them")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = report(load_records(args.paths))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
