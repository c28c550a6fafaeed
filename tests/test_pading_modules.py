"""PADing modules: generators, disentangler, head fitting, synthesis, and code defaults vs config."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.disentangle import Disentangler, RelationNetwork
from zsp_ros.model.gmmn_generator import GMMNGenerator
from zsp_ros.model.primitive_generator import PrimitiveGenerator
from zsp_ros.pading.head_fit import fit_head, pading_class_weights
from zsp_ros.pading.losses import MMD_BANDWIDTHS
from zsp_ros.pading.synthesis import synthesize_embeddings

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def _small_generator(**kw) -> PrimitiveGenerator:
    args = dict(semantic_dim=10, embed_dim=16, num_primitives=12, num_layers=2, num_heads=4, ffn_dim=32)
    return PrimitiveGenerator(**{**args, **kw})


def test_primitive_generator_shape_and_layer_norm():
    torch.manual_seed(0)
    gen = _small_generator().eval()
    out = gen(torch.randn(5, 10))
    assert out.shape == (5, 16) and out.dtype == torch.float32
    assert torch.allclose(out.mean(1), torch.zeros(5), atol=1e-4)  # final LayerNorm (affine at init)
    assert gen(torch.randn(0, 10)).shape == (0, 16)


def test_primitive_generator_depends_on_noise():
    torch.manual_seed(0)
    gen = _small_generator().eval()
    sem = torch.randn(1, 10).repeat(4, 1)                     # one category, four draws
    out = gen(sem)
    assert (out[0] - out[1]).abs().max() > 1e-3              # fresh noise -> different samples
    noise = gen.sample_noise(4, generator=torch.Generator().manual_seed(1))
    assert noise.shape == (2, 4, 16)
    assert torch.equal(gen(sem, noise), gen(sem, noise))      # the same noise -> the same output
    quiet = _small_generator(noise_std=0.0).eval()
    same = quiet(sem)
    assert torch.allclose(same[0], same[3])                   # no noise -> deterministic
    with pytest.raises(ValueError, match="noise must be"):
        gen(sem, torch.zeros(1, 4, 16))
    with pytest.raises(ValueError, match="semantic must be"):
        gen(torch.randn(4, 9))


def test_primitive_generator_trains_end_to_end():
    # The output ends in a LayerNorm, so its sum over the embedding is sum(bias): a constant.
    # out.sum() has an exactly-zero gradient w.r.t. everything before the final norm (any
    # non-zero value is rounding noise), so regress onto a fixed random target instead.
    torch.manual_seed(0)
    gen = _small_generator(dropout=0.0)                       # no dropout: the step check is exact
    g = torch.Generator().manual_seed(1)
    sem = torch.randn(6, 10, generator=g)
    noise = gen.sample_noise(6, generator=g)                  # the same noise in both evaluations
    target = torch.randn(6, 16, generator=g)
    loss = F.mse_loss(gen(sem, noise), target)
    loss.backward()
    # The key-projection bias adds the same q.b_k to every primitive's logit, and the softmax
    # is shift-invariant: its gradient is exactly zero in exact arithmetic (rounding noise here).
    key_bias = {f"layers.{i}.cross_attn.k_proj.bias" for i in range(gen.num_layers)}
    for name, param in gen.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if name in key_bias:
            assert param.grad.abs().max() < 1e-6, name
        else:
            assert param.grad.abs().max() > 1e-4, name
    assert gen.primitives.grad.abs().max() > 1e-3             # the primitives get real gradient
    assert gen.semantic_proj.weight.grad.abs().max() > 1e-2   # and so does the semantic projection
    torch.optim.SGD(gen.parameters(), lr=0.1).step()
    with torch.no_grad():
        after = F.mse_loss(gen(sem, noise), target)
    assert after < 0.95 * loss.detach()                        # one step lowers the loss


def test_gmmn_generator_shape_and_noise():
    torch.manual_seed(0)
    gen = GMMNGenerator(semantic_dim=10, embed_dim=16, noise_dim=8, hidden_dim=20).eval()
    sem = torch.randn(1, 10).repeat(3, 1)
    out = gen(sem)
    assert out.shape == (3, 16) and (out[0] - out[1]).abs().max() > 1e-4
    noise = gen.sample_noise(3)
    assert torch.equal(gen(sem, noise), gen(sem, noise))
    assert GMMNGenerator(semantic_dim=10, embed_dim=16, noise_dim=8, hidden_dim=0)(sem).shape == (3, 16)


def test_disentangler_shapes_and_relation_equals_the_concatenation_form():
    torch.manual_seed(0)
    dis = Disentangler(embed_dim=16, dropout=0.1).eval()
    related, unrelated, rec = dis(torch.randn(6, 16))
    assert related.shape == unrelated.shape == rec.shape == (6, 16)
    rel = RelationNetwork(feature_dim=16, semantic_dim=12)
    feats, sem = torch.randn(5, 16), torch.randn(3, 12)
    scores = rel(feats, sem)
    pairs = torch.cat([feats[:, None].expand(5, 3, 16), sem[None].expand(5, 3, 12)], -1)
    naive = torch.sigmoid(rel.fc2(torch.relu(rel.fc1(pairs)))).squeeze(-1)
    assert scores.shape == (5, 3) and torch.allclose(scores, naive, atol=1e-6)


def _blobs(k: int, e: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(k + 1, e, generator=g)
    y = torch.arange(k + 1).repeat_interleave(n)
    return centres[y] + torch.randn(y.numel(), e, generator=g), y


def test_fit_head_separates_blobs_and_is_deterministic():
    x, y = _blobs(6, 16, 30, seed=0)
    weights = pading_class_weights(torch.tensor([False] * 4 + [True] * 2))
    assert weights.tolist() == pytest.approx([1, 1, 1, 1, 5, 5, 0.1])
    threads = torch.get_num_threads()
    head = fit_head(x, y, weights, seed=3, num_threads=1)
    assert torch.get_num_threads() == threads
    assert isinstance(head, ClassifierHead) and head.weight.shape == (7, 16) and not head.training
    assert float((head(x).argmax(1) == y).float().mean()) > 0.97
    again = fit_head(x, y, weights, seed=3, num_threads=1)
    assert torch.equal(head.weight, again.weight) and torch.equal(head.bias, again.bias)
    for optimizer, lr in (("adam", 3e-2), ("sgd", 0.1)):
        other = fit_head(x, y, weights, optimizer=optimizer, lr=lr, steps=60, batch_size=64,
                         num_threads=1)
        assert float((other(x).argmax(1) == y).float().mean()) > 0.9, optimizer


def test_fit_head_warm_start_and_input_errors():
    x, y = _blobs(3, 8, 10, seed=1)
    w = torch.ones(4)
    head = fit_head(x, y, w, steps=0, init=(torch.zeros(4, 8), torch.arange(4.0)))
    assert torch.equal(head.bias, torch.arange(4.0))             # 0 steps: exactly the init
    with pytest.raises(ValueError, match="init must be"):
        fit_head(x, y, w, init=(torch.zeros(5, 8), torch.zeros(5)))
    with pytest.raises(ValueError, match="labels must lie"):
        fit_head(x, y + 1, w)
    with pytest.raises(ValueError, match="optimizer"):
        fit_head(x, y, w, optimizer="rmsprop")


def test_synthesis_is_seeded_and_restores_mode():
    torch.manual_seed(0)
    gen = _small_generator()
    sem = torch.randn(3, 10)
    a, la = synthesize_embeddings(gen, sem, [7, 8, 9], per_class=4, seed=5)
    b, _ = synthesize_embeddings(gen, sem, [7, 8, 9], per_class=4, seed=5, batch_size=5)
    assert a.shape == (12, 16) and la.tolist() == [7] * 4 + [8] * 4 + [9] * 4
    assert torch.allclose(a, b, atol=1e-6) and gen.training
    c, _ = synthesize_embeddings(gen, sem, [7, 8, 9], per_class=4, seed=6)
    assert not torch.allclose(a, c)
    empty, lempty = synthesize_embeddings(gen, sem, [7, 8, 9], per_class=0)
    assert empty.shape == (0, 16) and lempty.numel() == 0


def test_code_defaults_match_the_released_numbers_in_config():
    cfg = yaml.safe_load((CONFIG_DIR / "pading_coco.yaml").read_text())
    gen = PrimitiveGenerator(semantic_dim=8)
    assert {k: gen.config[k] for k in cfg["generator"]} == cfg["generator"]
    assert gen.embed_dim == 256
    gmmn = GMMNGenerator(semantic_dim=8)
    assert {k: gmmn.config[k] for k in cfg["gmmn_generator"]} == cfg["gmmn_generator"]
    assert Disentangler().config["dropout"] == cfg["disentangle"]["dropout"]
    assert list(MMD_BANDWIDTHS) == [float(b) for b in cfg["losses"]["mmd_bandwidths"]]
    weights = pading_class_weights(torch.tensor([False, True]))
    cw = cfg["class_weights"]
    assert weights.tolist() == pytest.approx([cw["seen"], cw["unseen"], cw["no_object"]])
