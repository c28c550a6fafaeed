"""The PADing stage 2-3 config (config/pading_*.yaml): its schema, loading and validation.

A config is a mapping with exactly the sections of REQUIRED, each holding exactly the listed
keys (values live only in the YAML files, never as defaults here). ``variants`` maps a variant
name to exactly the VARIANT_KEYS: ``generator`` ("primitive" or "gmmn"),
``classification_loss``, ``disentangle`` and ``alignment`` (booleans). ``losses.mmd_mode`` is
"batch" or "per_class".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# the variants `zsp train pading --variant` offers (each a key of the config's "variants")
VARIANTS = ("pading", "gmmn", "primitives", "primitives_alignment")

# The keys every config must hold (values live only in config/*.yaml).
REQUIRED: dict[str, tuple[str, ...]] = {
    "text_encoder": ("name", "kwargs"),
    "generator": ("num_primitives", "num_layers", "num_heads", "ffn_dim", "dropout", "noise_std"),
    "gmmn_generator": ("noise_dim", "hidden_dim", "dropout"),
    "disentangle": ("dropout",),
    "losses": ("mmd_bandwidths", "mmd_mode", "classification_weight", "structure_weight",
               "alignment_weight", "relation_weight", "reconstruction_weight", "relation_factor",
               "unrelated_factor", "temperature"),
    "optim": ("steps", "images_per_step", "generator_lr", "generator_lr_steps", "generator_lr_gamma",
              "classifier_lr", "classifier_momentum", "classifier_weight_decay", "num_choose"),
    "class_weights": ("seen", "unseen", "no_object"),
    "final_head": ("enabled", "fakes_per_class", "max_rows_per_class", "optimizer", "steps", "lr",
                   "weight_decay", "warm_start"),
    "logging": ("log_every", "checkpoint_every", "tensorboard"),
    "variants": (),
}
VARIANT_KEYS = ("generator", "classification_loss", "disentangle", "alignment")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a PADing YAML config and check that it has exactly the required keys."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    validate_config(cfg, source=str(path))
    return cfg


def validate_config(cfg: dict[str, Any], *, source: str = "config") -> None:
    """Raise naming every missing or unknown key."""
    problems = [f"unknown section {k!r}" for k in cfg if k not in REQUIRED]
    for section, keys in REQUIRED.items():
        if section not in cfg or not isinstance(cfg[section], dict):
            problems.append(f"missing section {section!r}")
            continue
        if section == "variants":
            for name, spec in cfg[section].items():
                if set(spec) != set(VARIANT_KEYS):
                    problems.append(f"variants.{name} must have exactly {list(VARIANT_KEYS)}")
                elif spec["generator"] not in ("primitive", "gmmn"):
                    problems.append(f"variants.{name}.generator must be primitive or gmmn")
            continue
        problems += [f"missing {section}.{k}" for k in keys if k not in cfg[section]]
        problems += [f"unknown {section}.{k}" for k in cfg[section] if k not in keys]
    if "losses" in cfg and cfg["losses"].get("mmd_mode") not in ("batch", "per_class"):
        problems.append("losses.mmd_mode must be 'batch' or 'per_class'")
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
