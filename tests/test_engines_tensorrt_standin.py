"""TensorRT builder, engine cache, backend and CLI control flow, run against ``fake_tensorrt``.

TensorRT cannot be installed here. ``tests/fake_tensorrt.py`` is a small stand-in with the same
names as the TensorRT 10 Python API (clearly NOT TensorRT), injected as ``sys.modules["tensorrt"]``;
its "parser" reads the real exported ONNX graph, so the fp32 pinning of the deformable-attention
plugin is checked on the real plugin export. What is tested is our control flow: the calls and
flags, error reporting, the engine cache's keys and refusals, I/O binding by name and the
"TensorRT is absent" messages — not TensorRT's behaviour.
"""
from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

pytest.importorskip("onnx")

from tests import fake_tensorrt  # noqa: E402
from tests.runtime_fakes import TINY_MASK2FORMER  # noqa: E402
from zsp_ros.export import engine_cache, tensorrt_builder
from zsp_ros.export.engine_cache import EngineCache
from zsp_ros.export.onnx_export import export_onnx  # noqa: E402
from zsp_ros.export.tensorrt_builder import EngineBuildError, build_engine
from zsp_ros.runtime.backends import tensorrt_backend  # noqa: E402
from zsp_ros.runtime.backends.engine_artifact import (  # noqa: E402
    EngineKey,
    StaleEngineError,
    TensorRTUnavailable,  # noqa: E402
    check_engine,
    sidecar_path,
)

GPU = ("Fake GPU 80GB", "9.0")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from zsp_ros.model.build import build_mask2former

    torch.set_num_threads(1)
    cfg = copy.deepcopy(TINY_MASK2FORMER)
    cfg["pixel_decoder"]["enc_layers"] = 2
    torch.manual_seed(0)
    net = build_mask2former(cfg, 3).eval()
    folder = tmp_path_factory.mktemp("exports")
    return {v: export_onnx(net, folder / f"{v}.onnx", height=64, width=64, variant=v, kit_sha256="a" * 64).path
            for v in ("plugin", "portable")}


@pytest.fixture
def trt(monkeypatch):
    fake = fake_tensorrt.fresh("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    for module in (engine_cache, tensorrt_backend):          # every module that asks which GPU is in use
        monkeypatch.setattr(module, "gpu_identity", lambda index=0: GPU)
    return fake


@pytest.fixture
def no_trt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)           # makes `import tensorrt` raise ImportError


def test_build_uses_the_tensorrt10_calls_and_pins_the_plugin(trt, exports, tmp_path):
    cache_file = tmp_path / "timing.cache"
    data, report = build_engine(exports["plugin"], precision="fp16", workspace_mb=512, timing_cache=cache_file,
                                msda_fp32=True)
    engine = json.loads(data)                                   # the fake's "engine": what the builder was told
    assert ("init_plugins", "") in trt.CALLS and ("create_network", 0) in trt.CALLS
    assert engine["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert engine["pools"] == {"WORKSPACE": 512 << 20}
    assert report.plugin_layers == 2 and report.precision == "fp16" and report.tensorrt_version == "10.3.0"
    pinned = engine["pinned"]
    assert {"msda_plugin_0", "msda_plugin_1"} <= set(pinned)
    assert all(precision == "FLOAT" and set(types.values()) == {"FLOAT"} for precision, types in pinned.values())
    # the sampling-location arithmetic feeding each plugin (reference points + offsets / (W, H)) is pinned too
    assert any("self_attn/Add" in name for name in pinned) and any("self_attn/Div" in name for name in pinned)
    assert not any("backbone" in name or "predictor" in name for name in pinned)
    assert not any("Concat" in name or "Constant" in name for name in pinned)     # int shape tensors left alone
    assert cache_file.read_bytes().startswith(trt.TIMING_CACHE_TAG.encode())
    _, again = build_engine(exports["plugin"], precision="fp16", timing_cache=cache_file)
    assert again.timing_cache_loaded_bytes == cache_file.stat().st_size and again.pinned_fp32_layers == []


def test_fp32_build_sets_no_precision_flags(trt, exports):
    data, report = build_engine(exports["portable"], precision="fp32")
    assert json.loads(data)["flags"] == [] and report.plugin_layers == 0


def test_every_parser_error_is_reported(trt, exports):
    trt.UNSUPPORTED_OPS = {"GridSample", "LayerNormalization"}
    with pytest.raises(EngineBuildError) as info:
        build_engine(exports["portable"], precision="fp32")
    message = str(info.value)
    assert "could not parse" in message and message.count("No importer registered") >= 4
    assert "(GridSample)" in message and "code UNSUPPORTED_NODE" in message and "ModelImporter.cpp:42" in message


def test_refusals_name_the_reason(trt, exports, tmp_path, monkeypatch):
    with pytest.raises(EngineBuildError, match="no MultiscaleDeformableAttnPlugin_TRT layers"):
        build_engine(exports["portable"], precision="fp16", msda_fp32=True)
    with pytest.raises(ValueError, match="only means something in an fp16 engine"):
        build_engine(exports["plugin"], precision="fp32", msda_fp32=True)
    foreign = tmp_path / "foreign.cache"
    foreign.write_bytes(b"another GPU's cache")
    with pytest.raises(EngineBuildError, match="timing cache"):
        build_engine(exports["plugin"], precision="fp32", timing_cache=foreign)
    trt.FAIL_BUILD = True
    with pytest.raises(EngineBuildError, match="could not build"):
        build_engine(exports["plugin"], precision="fp32")
    monkeypatch.delattr(trt.BuilderFlag, "FP16")            # TensorRT 11: strong typing only
    trt.__version__ = "11.1.0"
    with pytest.raises(EngineBuildError, match="no BuilderFlag.FP16"):
        build_engine(exports["plugin"], precision="fp16")
    trt.__version__ = "8.6.1"
    with pytest.raises(EngineBuildError, match="TensorRT 10 API"):
        build_engine(exports["plugin"], precision="fp32")


def test_without_tensorrt_every_entry_point_says_so_in_one_line(no_trt, exports, tmp_path, capsys):
    from zsp_ros.cli.main import main
    from zsp_ros.runtime.backends.tensorrt_backend import TensorRTBackend

    for call in (lambda: build_engine(exports["plugin"]),
                 lambda: EngineCache(tmp_path).get_or_build(exports["plugin"], precision="fp16"),
                 lambda: TensorRTBackend(engine_path=tmp_path / "x.engine")):
        with pytest.raises(TensorRTUnavailable) as info:
            call()
        assert "\n" not in str(info.value) and "TensorRT is not available" in str(info.value)
    assert main(["engine", "build", "--onnx", str(exports["plugin"]), "--precision", "fp16"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TensorRT is not available" in err


def test_cache_builds_reuses_and_rebuilds_with_the_reason(trt, exports, tmp_path, monkeypatch):
    cache = EngineCache(tmp_path / "engines")
    first = cache.get_or_build(exports["plugin"], precision="fp16", msda_fp32=True)
    assert first.status == "built" and first.engine_path.name == "plugin.fp16-msdafp32.engine"
    assert sidecar_path(first.engine_path).is_file()
    side = first.sidecar
    assert side["key"] == EngineKey(onnx_sha256=engine_cache.file_sha256(exports["plugin"]), tensorrt_version="10.3.0",
                                    gpu_name=GPU[0], compute_capability=GPU[1], precision="fp16", msda_fp32=True)
    assert side["onnx_metadata"]["kit_sha256"] == "a" * 64 and side["build"]["plugin_layers"] == 2
    builds = trt.CALLS.count(("build",))
    assert cache.get_or_build(exports["plugin"], precision="fp16", msda_fp32=True).status == "hit"
    assert trt.CALLS.count(("build",)) == builds
    trt.__version__ = "10.14.1"                                      # TensorRT upgraded: the engine is stale
    with pytest.raises(StaleEngineError, match="tensorrt_version: engine '10.3.0', in use '10.14.1'"):
        cache.get_or_build(exports["plugin"], precision="fp16", msda_fp32=True, rebuild=False)
    again = cache.get_or_build(exports["plugin"], precision="fp16", msda_fp32=True)
    assert again.status == "rebuilt" and "tensorrt_version" in again.reason
    monkeypatch.setattr(engine_cache, "gpu_identity", lambda index=0: ("Orin", "8.7"))
    moved = cache.get_or_build(exports["plugin"], precision="fp16", msda_fp32=True)
    assert moved.status == "rebuilt" and "gpu_name" in moved.reason and "compute_capability" in moved.reason
    other = cache.get_or_build(exports["plugin"], precision="fp32")
    assert other.status == "built" and other.engine_path != moved.engine_path


def test_damaged_foreign_or_undocumented_engines_are_refused(trt, exports, tmp_path):
    result = EngineCache(tmp_path).get_or_build(exports["plugin"], precision="fp16")
    key = result.sidecar["key"]
    assert check_engine(result.engine_path, expected=key, kit_sha256="a" * 64)["engine_bytes"] > 0
    with pytest.raises(StaleEngineError, match="kit: engine built from kit aaaaaaaaaaaa"):
        check_engine(result.engine_path, expected=key, kit_sha256="b" * 64)
    with pytest.raises(StaleEngineError, match="precision: engine 'fp16', in use 'fp32'"):
        check_engine(result.engine_path, expected=EngineKey(**{**key.__dict__, "precision": "fp32"}))
    result.engine_path.write_bytes(result.engine_path.read_bytes() + b"x")
    with pytest.raises(StaleEngineError, match="damaged or replaced"):
        check_engine(result.engine_path, expected=key)
    sidecar_path(result.engine_path).unlink()
    with pytest.raises(StaleEngineError, match="has no sidecar"):
        check_engine(result.engine_path, expected=key)


def test_backend_refuses_a_stale_engine_before_deserializing_it(trt, exports, tmp_path, monkeypatch):
    from zsp_ros.runtime.backends import tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "resolve_device", lambda device: torch.device("cuda", 0))
    engine = EngineCache(tmp_path).get_or_build(exports["plugin"], precision="fp16").engine_path
    trt.__version__ = "10.14.1"
    with pytest.raises(StaleEngineError, match="tensorrt_version"):
        tensorrt_backend.TensorRTBackend(engine_path=engine, device="cuda", precision="fp16")
    trt.__version__ = "10.3.0"
    with pytest.raises(StaleEngineError, match="precision"):
        tensorrt_backend.TensorRTBackend(engine_path=engine, device="cuda", precision="fp32")
    with pytest.raises(StaleEngineError, match="kit"):
        tensorrt_backend.TensorRTBackend(engine_path=engine, device="cuda", precision="fp16", kit_sha256="c" * 64)
    assert ("deserialize",) not in trt.CALLS
    monkeypatch.setattr(tensorrt_backend, "resolve_device", lambda device: torch.device("cpu"))
    with pytest.raises(ValueError, match="CUDA GPU only"):
        tensorrt_backend.TensorRTBackend(engine_path=engine, device="cpu")


def test_engine_io_binds_tensors_by_name_and_runs(trt, exports, tmp_path):
    from zsp_ros.runtime.backends.tensorrt_backend import EngineIO

    engine_path = EngineCache(tmp_path).get_or_build(exports["plugin"], precision="fp16").engine_path
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(engine_path.read_bytes())
    io = EngineIO(trt=trt, engine=engine, device="cpu", where=engine_path.name)     # CPU buffers stand in for CUDA
    assert io.input_hw == (64, 64) and set(io.buffers) == {"images", "mask_logits", "query_embeds"}
    images = torch.full((1, 3, 64, 64), 2.5)
    masks, embeds = io.run(images, stream_handle=1234)
    assert ("execute", 1234) in trt.CALLS
    assert masks.shape == (1, 8, 16, 16) and embeds.shape == (1, 8, 32)
    assert masks.flatten()[:3].tolist() == pytest.approx([2.5, 2.501, 2.502])
    assert embeds.flatten()[:3].tolist() == pytest.approx([0.0, 0.01, 0.02])
    assert masks.data_ptr() != io.buffers["mask_logits"].data_ptr()     # copies: the next run may overwrite buffers


def test_engine_io_checks_the_graph_contract(trt):
    from zsp_ros.runtime.backends.tensorrt_backend import EngineIO

    wrong = trt.Runtime(trt.Logger()).deserialize_cuda_engine(
        b'{"io": [["input", [1, 3, 64, 64], "INPUT"], ["mask_logits", [1, 8, 16, 16], "OUTPUT"]]}')
    with pytest.raises(ValueError, match="expected \\['images'\\]"):
        EngineIO(trt=trt, engine=wrong, device="cpu", where="wrong.engine")
    dynamic = trt.Runtime(trt.Logger()).deserialize_cuda_engine(
        b'{"io": [["images", [1, 3, -1, -1], "INPUT"]]}')
    with pytest.raises(ValueError, match="dynamic shape"):
        EngineIO(trt=trt, engine=dynamic, device="cpu", where="dynamic.engine")


def test_cli_builds_then_reuses(trt, exports, tmp_path, capsys):
    from zsp_ros.cli.main import main

    argv = ["engine", "build", "--onnx", str(exports["plugin"]), "--precision", "fp16", "--msda-fp32",
            "--workspace", "256", "--timing-cache", str(tmp_path / "t.cache"), "--cache", str(tmp_path / "e")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("built: ") and "TensorRT 10.3.0" in out and "msda fp32" in out and "2 plugin layers" in out
    assert main(argv) == 0 and capsys.readouterr().out.startswith("hit: ")
    assert main(["engine", "build", "--onnx", str(tmp_path / "missing.onnx"), "--precision", "fp32"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_builder_module_never_imports_tensorrt_at_import_time():
    assert "tensorrt" not in vars(tensorrt_builder) and "trt" not in vars(tensorrt_builder)
