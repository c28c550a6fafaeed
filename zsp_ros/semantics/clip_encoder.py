"""CLIP text tower (open-clip-torch, ViT-B/16 by default) with PADing's prompt ensemble.

As in PADing's released code (heshuting555/PADing@5d81719, PADing/PADing_model.py ``get_embeddings``:
``clip.load("ViT-B/16")``, prompt type "imagenet_select"), each name is written into every prompt
template, each prompt is encoded and L2-normalised, the prompts of a name are averaged and the mean
normalised again. A name holding ", " (COCO-stuff style "wall, brick") contributes every part to the
ensemble. The model is built with random weights (`pretrained=None`, so open_clip never
downloads) and then loaded from a local file the user provides.

Activation: OpenAI's CLIP (what PADing used) runs QuickGELU (x * sigmoid(1.702 x)); open_clip's
"ViT-B-16" config runs nn.GELU, which gives other embeddings from the same weights. ``quick_gelu``
None picks QuickGELU for OpenAI's TorchScript ``ViT-B-16.pt`` and GELU otherwise; give True for
OpenAI weights stored in open_clip form (e.g. ``timm/vit_base_patch16_clip_224.openai``).
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zsp_ros.semantics.base import TextEncoder

# PADing's IMAGENET_TEMPLATES_SELECT (PADing/third_party/imagenet_templates.py), the ensemble its
# get_embeddings uses for every task.
PADING_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
    "A photo of a {} in the scene",
)

WEIGHTS_ENV = "ZSP_CLIP_WEIGHTS"


def default_weights_path(model_name: str = "ViT-B-16") -> Path:
    """Where the CLIP weights are looked for when no path is given.

    ``$ZSP_CLIP_WEIGHTS`` if set, else ``$XDG_CACHE_HOME/zsp_ros/clip/<model_name>.safetensors``
    (``~/.cache`` when XDG_CACHE_HOME is unset).
    """
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "zsp_ros" / "clip" / f"{model_name}.safetensors"


def missing_weights_message(path: Path, model_name: str) -> str:
    """The error text for absent weights: what to download and where to put it."""
    return (
        f"CLIP {model_name} text-encoder weights not found at {path}.\n"
        f"This machine cannot download them. On a machine with internet, get the OpenAI "
        f"{model_name} checkpoint in open_clip form (Hugging Face repo "
        f"'timm/vit_base_patch16_clip_224.openai', file 'open_clip_model.safetensors'; or "
        f"OpenAI's 'ViT-B-16.pt'), copy it to {path} "
        f"(or anywhere, then pass weights=PATH / `--clip-weights PATH`, or set {WEIGHTS_ENV}=PATH). "
        f"Accepted: .safetensors, .bin/.pth state dicts, OpenAI TorchScript .pt.")


class ClipTextEncoder(TextEncoder):
    """CLIP text embeddings (512-d for ViT-B-16) averaged over prompt templates.

    Args:
        weights: local weights file; None -> `default_weights_path(model_name)`.
        model_name: open_clip architecture name.
        templates: prompt templates, each with one "{}" for the name.
        device: torch device string.
        batch_size: prompts per forward pass.
        quick_gelu: QuickGELU activations (OpenAI's CLIP); None: True for an OpenAI TorchScript file.

    Raises:
        FileNotFoundError: the weights file is absent (the message says where to put it).
    """

    image_aligned = True

    def __init__(self, *, weights: str | os.PathLike | None = None, model_name: str = "ViT-B-16",
                 templates: Sequence[str] = PADING_TEMPLATES, device: str = "cpu",
                 batch_size: int = 256, quick_gelu: bool | None = None) -> None:
        path = Path(weights).expanduser() if weights is not None else default_weights_path(model_name)
        if not path.is_file():
            raise FileNotFoundError(missing_weights_message(path, model_name))
        templates = tuple(templates)
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise ValueError(f"every template needs exactly one '{{}}'; got {templates!r}")
        import open_clip
        import torch

        config = open_clip.get_model_config(model_name)
        if config is None:
            raise ValueError(f"open_clip has no model named {model_name!r}")
        self.dim = int(config["embed_dim"])
        self.templates = templates
        self.weights_path = path
        self.device = device
        self.batch_size = batch_size
        self.identifier = f"clip-{model_name.lower()}"
        self._torch = torch
        torchscript = zipfile.is_zipfile(path) and _is_torchscript(path)
        self.quick_gelu = torchscript if quick_gelu is None else bool(quick_gelu)
        model = open_clip.create_model(model_name, pretrained=None, device="cpu", force_quick_gelu=self.quick_gelu)
        _load_text_weights(model, path, open_clip=open_clip, torch=torch)
        model.visual = None  # the image tower is not needed; free its memory
        self._model = model.to(device).eval()
        self._tokenizer = open_clip.get_tokenizer(model_name)

    def _prompts(self, name: str) -> list[str]:
        parts = name.split(", ") if ", " in name else [name]
        return [template.format(part) for template in self.templates for part in parts]

    def _encode(self, names: list[str]) -> np.ndarray:
        torch = self._torch
        prompts, owner = [], []
        for i, name in enumerate(names):
            texts = self._prompts(name)
            prompts += texts
            owner += [i] * len(texts)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                tokens = self._tokenizer(prompts[start:start + self.batch_size]).to(self.device)
                feats = self._model.encode_text(tokens).float()
                chunks.append(torch.nn.functional.normalize(feats, dim=-1).cpu())
            feats = torch.cat(chunks)                                    # [P, D]
            index = torch.tensor(owner)
            sums = torch.zeros(len(names), feats.shape[1]).index_add_(0, index, feats)
            counts = torch.bincount(index, minlength=len(names)).clamp(min=1).unsqueeze(1)
        return (sums / counts).numpy()                                   # normalised by encode()


def _load_text_weights(model, path: Path, *, open_clip, torch) -> None:
    """Load ``path`` into ``model``; every text-tower parameter must be present in the file."""
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        result = model.load_state_dict(state, strict=False)
    else:
        result = open_clip.load_checkpoint(model, str(path), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("visual.")
               and k not in ("logit_scale", "logit_bias")]
    if missing:
        raise ValueError(f"{path} does not hold a CLIP text tower for this model: "
                         f"{len(missing)} text parameters missing, e.g. {missing[:5]}")


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())
