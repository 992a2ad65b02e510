"""Names that simulated AnnData and MuData carry, defined once for every layer that reads them."""

from __future__ import annotations

#: The control modality of a perturbation MuData (``GroundGAN.perturb``).
CONTROL_MODALITY = "control"
#: The perturbation table (modality, gene, value, mode): in ``mdata.uns`` for all modalities,
#: in a perturbed modality's ``uns`` for its own rows.
PERTURBATIONS_KEY = "groundgan_perturbations"
#: The per-modality key earlier versions wrote (still read).
LEGACY_PERTURBATION_KEY = "groundgan_perturbation"
