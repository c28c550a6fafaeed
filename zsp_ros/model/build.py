"""Builders: the only place that reads config dicts and turns them into keyword arguments.

Config files (``config/*.yaml``) have a ``model:`` section read here and a ``train:`` section read by
the training code. The ``model`` section::

    backbone:       {depth: 18|34|50, width: float, norm: FrozenBN|GN|BN}
    pixel_decoder:  {conv_dim, mask_dim, norm, transformer_in_features, common_stride,
                     enc_layers, nheads, n_points, dim_feedforward}
    decoder:        {hidden_dim, num_queries, nheads, dim_feedforward, dec_layers, pre_norm,
                     enforce_input_project}

Unknown or missing keys are errors, so a typo cannot silently fall back to a default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zsp_ros.model.backbone import ResNet
from zsp_ros.model.mask2former import Mask2Former, MaskFormerHead
from zsp_ros.model.pixel_decoder import MSDeformAttnPixelDecoder
from zsp_ros.model.transformer_decoder import MultiScaleMaskedTransformerDecoder

_SECTIONS: dict[str, set[str]] = {
    "backbone": {"depth", "width", "norm"},
    "pixel_decoder": {"conv_dim", "mask_dim", "norm", "transformer_in_features", "common_stride", "enc_layers",
                      "nheads", "n_points", "dim_feedforward"},
    "decoder": {"hidden_dim", "num_queries", "nheads", "dim_feedforward", "dec_layers", "pre_norm",
                "enforce_input_project"},
}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict with at least a ``model`` section."""
    import yaml

    path = Path(path)
    with path.open() as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ValueError(f"{path}: expected a mapping with a 'model:' section")
    return cfg


def _section(model_cfg: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in model_cfg:
        raise ValueError(f"model config lacks the '{name}' section (has {sorted(model_cfg)})")
    section = dict(model_cfg[name])
    unknown = set(section) - _SECTIONS[name]
    missing = _SECTIONS[name] - set(section)
    if unknown or missing:
        raise ValueError(f"model.{name}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    return section


def build_backbone(backbone_cfg: dict[str, Any]) -> ResNet:
    """``model.backbone`` -> :class:`ResNet`."""
    return ResNet(depth=int(backbone_cfg["depth"]), width=float(backbone_cfg["width"]), norm=str(backbone_cfg["norm"]))


def build_mask2former(model_cfg: dict[str, Any], num_classes: int) -> Mask2Former:
    """Build Mask2Former from the ``model`` section of a config, with a head for ``num_classes`` (K) categories."""
    unknown = set(model_cfg) - set(_SECTIONS)
    if unknown:
        raise ValueError(f"model config: unknown sections {sorted(unknown)}; expected {sorted(_SECTIONS)}")
    backbone = build_backbone(_section(model_cfg, "backbone"))
    pd = _section(model_cfg, "pixel_decoder")
    dec = _section(model_cfg, "decoder")
    pixel_decoder = MSDeformAttnPixelDecoder(
        in_channels=dict(backbone.out_channels), in_strides=dict(backbone.out_strides),
        transformer_in_features=list(pd["transformer_in_features"]), conv_dim=int(pd["conv_dim"]),
        mask_dim=int(pd["mask_dim"]), norm=str(pd["norm"]), nheads=int(pd["nheads"]), n_points=int(pd["n_points"]),
        dim_feedforward=int(pd["dim_feedforward"]), enc_layers=int(pd["enc_layers"]),
        common_stride=int(pd["common_stride"]))
    predictor = MultiScaleMaskedTransformerDecoder(
        in_channels=int(pd["conv_dim"]), num_classes=int(num_classes), hidden_dim=int(dec["hidden_dim"]),
        num_queries=int(dec["num_queries"]), nheads=int(dec["nheads"]), dim_feedforward=int(dec["dim_feedforward"]),
        dec_layers=int(dec["dec_layers"]), pre_norm=bool(dec["pre_norm"]), mask_dim=int(pd["mask_dim"]),
        enforce_input_project=bool(dec["enforce_input_project"]))
    return Mask2Former(backbone=backbone, sem_seg_head=MaskFormerHead(pixel_decoder=pixel_decoder, predictor=predictor))
