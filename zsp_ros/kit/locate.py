"""Where a kit is: the one resolver of a user's kit argument (CLI ``--kit``, the node's ``kit`` parameter)."""
from __future__ import annotations

from pathlib import Path

from zsp_ros.kit.model_kit import MANIFEST, KitError


def default_kit_dir() -> Path:
    """The embedded default kit installed with the package (zsp_ros/kits/<name>/manifest.json).

    ``kits/default`` when present, else the only kit there; KitError when there is none (or several).
    """
    kits = Path(__file__).resolve().parents[1] / "kits"           # zsp_ros/kits
    if (kits / "default" / MANIFEST).is_file():
        return kits / "default"
    found = sorted(p.parent for p in kits.glob(f"*/{MANIFEST}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise KitError(f"no embedded model kit under {kits}; give a kit directory (--kit)")
    raise KitError(f"several kits under {kits} ({', '.join(p.name for p in found)}); choose one with --kit")


def resolve_kit(value: str | Path | None) -> Path:
    """The kit directory a user named: a path (``~`` expanded), or the embedded default for ""/None."""
    if value is not None and str(value) != "":
        return Path(value).expanduser()
    return default_kit_dir()
