"""`zsp bench runtime` end to end on a tiny world and a tiny kit of real parts (smoke: figures exist)."""
from __future__ import annotations

import json

from runtime_fakes import make_real_kit

from zsp_ros.cli.main import main


def test_bench_runtime_writes_every_key(tmp_path, monkeypatch):
    import zsp_ros.utils.provenance as prov
    from zsp_ros.data.synth_writer import generate_world

    monkeypatch.setattr(prov, "library_versions", lambda: {"stub": "imports of open_clip etc. skipped"})
    from zsp_ros.semantics.attribute_encoder import AttributeEncoder

    world = tmp_path / "world"
    generate_world(world, images=2, val_images=2, size=64, workers=1)
    split = json.loads((world / "split.json").read_text())
    vocab = AttributeEncoder.from_names([c["name"] for c in split["categories"]]).vocabularies
    seen = [{k: c[k] for k in ("id", "name", "isthing")} for c in split["categories"] if c["seen"]]
    kit = make_real_kit(tmp_path / "kit", categories=seen, vocabularies=vocab)
    offline = tmp_path / "offline.json"
    offline.write_text(json.dumps({"PQ": {"unseen": 12.5}}))
    out = tmp_path / "runtime.json"
    rc = main(["bench", "runtime", "--kit", str(kit), "--data", str(world), "--out", str(out), "--sizes", "96x64",
               "--repeats", "1", "--add-repeats", "1", "--add-sizes", "1", "3", "--offline-metrics", str(offline), "--threads", "1"])
    assert rc == 0
    report = json.loads(out.read_text())
    for key in ("add_category_s", "post_over_forward", "forward_ms", "segment_ms", "unseen_pq_before",
                "unseen_pq_after", "unseen_pq_offline"):
        assert key in report, key
    assert report["unseen_pq_before"] == 0.0                 # no unseen category can be predicted before
    assert report["unseen_pq_offline"] == 12.5
    assert report["add_category_s"] > 0 and report["forward_ms"] > 0
    table = report["add_category"]["per_size"]
    assert [row["added_before"] for row in table] == [0, 2] and all(row["add_s"] > 0 for row in table)
    assert report["add_category"]["eleven_names_s"] > 0 and report["add_category"]["refit_mode"] == "new_rows"
    assert set(report["panoptic"]["unseen_added"]) == {c["name"] for c in split["categories"] if not c["seen"]}
    assert report["sizes"]["96x64"]["network_hw"] == [64, 96]
    size = report["sizes"]["96x64"]
    assert 0 < size["postprocess_panoptic_only_ms"] and size["post_over_forward_panoptic_only"] > 0
    assert "machine" in report["provenance"] and report["postprocess_host"] in ("numba", "numpy")


def test_generic_add_names_survive_the_phrasing():
    """The bench's filler names carry a kit word but no colour, so the phrasing neither refuses them nor
    reads them as a kit category ("benchmark category 0 red circle" had become "red circle")."""
    from types import SimpleNamespace

    from zsp_ros.bench.runtime import _add_names
    from zsp_ros.semantics.build import build_text_encoder
    from zsp_ros.semantics.phrasing_encoder import PhrasingEncoder

    kit_names = ["red circle", "green square", "blue star", "gray stripes"]

    class Listing(list):                       # what CategoryRegistry.list() offers: iteration, len, get
        def get(self, name):
            return next((e for e in self if e.name == name), None)

    registry = SimpleNamespace(list=lambda: Listing(SimpleNamespace(name=n) for n in kit_names))
    names = _add_names(None, registry, 3)
    encoder = PhrasingEncoder(base=build_text_encoder("minilm"), vocabulary=kit_names)
    readings = encoder.interpret(names)
    assert len({r.text for r in readings}) == 3
    assert all(r.text not in kit_names and encoder.refusal(r) is None for r in readings)
