"""ResNet backbone with detectron2's parameter names, so detectron2/Mask2Former checkpoints load as is.

Names: ``stem.conv1`` (7×7/2 conv + ``.norm``, then 3×3/2 max-pool), stages ``res2``..``res5``
(``nn.Sequential`` of blocks ``res2.0`` ...), each block with ``conv1``/``conv2``(/``conv3``) and, when
the channel count changes, ``shortcut``; every conv has no bias and its norm as ``<conv>.norm``.
Bottleneck blocks (depth 50) put the stride in the 3×3 conv (detectron2 ``STRIDE_IN_1X1: False``).
Depth 18/34 use basic blocks as detectron2 does (res2 out channels 64).

``width`` multiplies every channel count (1.0 = the standard network); it exists for the small
synthetic-world model. ``norm`` is ``"FrozenBN"`` (detectron2's default, for pretrained weights),
``"GN"`` (32 groups; batch-independent, for training from scratch) or ``"BN"``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
STAGE_NAMES = ("res2", "res3", "res4", "res5")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (detectron2's ``FrozenBatchNorm2d``).

    Four buffers, ``weight``, ``bias``, ``running_mean``, ``running_var`` (no
    ``num_batches_tracked``), initialised to the identity. ``y = (x - mean) / sqrt(var + eps) * weight + bias``.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        """x: float [B, C, H, W] -> same shape and dtype."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # torchvision/BatchNorm2d checkpoints carry a counter that frozen BN does not need
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "FrozenBN": lambda c: FrozenBatchNorm2d(c),
    "GN": lambda c: nn.GroupNorm(32, c),
    "BN": lambda c: nn.BatchNorm2d(c),
}


def make_norm(norm: str, channels: int) -> nn.Module | None:
    """Norm layer by name ("" = none); GN needs ``channels`` divisible by 32."""
    if norm == "":
        return None
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from {sorted(NORMS)} or ''")
    if norm == "GN" and channels % 32:
        raise ValueError(f"GN uses 32 groups, so channels must be a multiple of 32, got {channels}")
    return NORMS[norm](channels)


class Conv2dNorm(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` submodule and activation (detectron2 ``Conv2d``).

    Parameter names: ``weight``, ``bias`` (if any) and ``norm.*`` — as in detectron2 checkpoints.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, norm: nn.Module | None = None,
                 activation: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_msra_fill(conv: nn.Conv2d) -> None:
    """Caffe2 MSRA init: Kaiming normal, fan_out, ReLU; bias 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv(in_channels: int, out_channels: int, *, kernel_size: int, norm: str, stride: int = 1) -> Conv2dNorm:
    """Bias-free conv + norm with "same" padding and Caffe2 MSRA init, as every ResNet conv."""
    conv = Conv2dNorm(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                      padding=kernel_size // 2, bias=False, norm=make_norm(norm, out_channels))
    c2_msra_fill(conv)
    return conv


class BasicBlock(nn.Module):
    """Two 3×3 convs (ResNet-18/34); projection ``shortcut`` when channels change."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.shortcut: Conv2dNorm | None = None
        if in_channels != out_channels:
            self.shortcut = _conv(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        self.conv1 = _conv(in_channels, out_channels, kernel_size=3, stride=stride, norm=norm)
        self.conv2 = _conv(out_channels, out_channels, kernel_size=3, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class BottleneckBlock(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 convs (ResNet-50); projection ``shortcut`` when channels change."""

    def __init__(self, *, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int,
                 norm: str) -> None:
        super().__init__()
        self.shortcut: Conv2dNorm | None = None
        if in_channels != out_channels:
            self.shortcut = _conv(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        self.conv1 = _conv(in_channels, bottleneck_channels, kernel_size=1, norm=norm)
        self.conv2 = _conv(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride, norm=norm)
        self.conv3 = _conv(bottleneck_channels, out_channels, kernel_size=1, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class BasicStem(nn.Module):
    """7×7/2 conv + norm + ReLU + 3×3/2 max-pool: stride 4."""

    def __init__(self, *, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, kernel_size=7, stride=2, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """ResNet returning the four stage outputs.

    Args:
        depth: 18, 34 or 50.
        width: channel multiplier (1.0 = standard: stem 64, res2..res5 out 64..512 for 18/34,
            256..2048 for 50); every count is rounded to an integer.
        norm: "FrozenBN", "GN" or "BN" for every conv.
        in_channels: input image channels.
    """

    def __init__(self, *, depth: int, width: float = 1.0, norm: str = "FrozenBN", in_channels: int = 3) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        stem_channels = round(64 * width)
        self.stem = BasicStem(in_channels=in_channels, out_channels=stem_channels, norm=norm)
        bottleneck = depth >= 50
        out_channels = round((256 if bottleneck else 64) * width)
        bottleneck_channels = stem_channels
        channels_in = stem_channels
        self.out_channels: dict[str, int] = {}
        self.out_strides: dict[str, int] = {}
        for index, (name, num_blocks) in enumerate(zip(STAGE_NAMES, STAGE_BLOCKS[depth])):
            blocks: list[BasicBlock | BottleneckBlock] = []
            for b in range(num_blocks):
                stride = 2 if (b == 0 and index > 0) else 1
                if bottleneck:
                    blocks.append(BottleneckBlock(in_channels=channels_in, out_channels=out_channels,
                                                  bottleneck_channels=bottleneck_channels, stride=stride,
                                                  norm=norm))
                else:
                    blocks.append(BasicBlock(in_channels=channels_in, out_channels=out_channels, stride=stride,
                                             norm=norm))
                channels_in = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_channels
            self.out_strides[name] = 4 * 2 ** index
            out_channels *= 2
            bottleneck_channels *= 2

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: float [B, 3, H, W] -> {"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]}."""
        out: dict[str, Tensor] = {}
        x = self.stem(x)
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            out[name] = x
        return out
