"""Train a tiny GroundGAN or GAN baseline in a separate process, for the kill-and-resume tests.

Usage: ``python resume_worker.py CONFIG.json``. The JSON config holds

* ``data``: an ``.h5ad`` file of library-size-normalised cells, ``grn``: a GRN CSV file
  (GroundGAN);
* ``model`` (optional): ``"GroundGAN"`` (default) or a GAN baseline's class name, set up with
  ``labels_key`` (optional) instead of a GRN;
* ``model_kwargs`` and ``train_kwargs``: arguments of the model and of its ``train``;
* ``pause_at`` (optional): ``[stage, completed_steps]``; before the step after that point the
  worker writes its pid to ``ready_file`` and sleeps, so a test can kill it at a known place
  (a checkpoint written at that point or earlier is on disk);
* ``out`` (optional): where to write the final weights (``torch.save`` of the state dict).

Training runs single-threaded with deterministic algorithms, so the same run gives the same
bits in any process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anndata as ad
import pandas as pd
import torch

import groundgan as gg
from groundgan.train import WGANGPStage


def deterministic() -> None:
    """Single thread, deterministic kernels: identical bits in every process."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def pause_before(stage: str, completed: int, ready_file: Path) -> None:
    """Make every stage sleep before the step that follows ``completed`` steps of ``stage``."""
    original = WGANGPStage.step

    def step(self):
        if self.name == stage and self.completed_steps == completed:
            ready_file.write_text(str(os.getpid()))
            time.sleep(600)
        return original(self)

    WGANGPStage.step = step


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    deterministic()
    adata = ad.read_h5ad(config["data"])
    name = config.get("model", "GroundGAN")
    if name == "GroundGAN":
        cls = gg.GroundGAN
        cls.setup_anndata(adata, grn=pd.read_csv(config["grn"]))
    else:
        cls = getattr(gg.baselines, name)
        cls.setup_anndata(adata, labels_key=config.get("labels_key"))
    model = cls(adata, **config["model_kwargs"])
    if config.get("pause_at"):
        stage, completed = config["pause_at"]
        pause_before(stage, int(completed), Path(config["ready_file"]))
    model.train(**config["train_kwargs"])
    if config.get("out"):
        torch.save(model.module.state_dict(), config["out"])


if __name__ == "__main__":
    main(sys.argv[1])
