"""Mask2Former assembled: backbone -> pixel decoder -> masked transformer decoder -> classifier.

Module tree (and so the state_dict keys) follows detectron2's ``MaskFormer`` meta-architecture:
``backbone.*``, ``sem_seg_head.pixel_decoder.*``, ``sem_seg_head.predictor.*``; the classifier is
``sem_seg_head.predictor.class_embed``. There is no loss, no pre- or post-processing inside:
the input is already normalised and padded (``zsp_ros.inference.preprocess``), the outputs are raw.
"""
from __future__ import annotations

from typing import TypedDict, cast

from torch import Tensor, nn

from zsp_ros.model.backbone import ResNet
from zsp_ros.model.classifier import ClassifierHead
from zsp_ros.model.pixel_decoder import MSDeformAttnPixelDecoder
from zsp_ros.model.transformer_decoder import MultiScaleMaskedTransformerDecoder

# per decoder prediction (L + 1): mask logits [B, Q, H/4, W/4] and query embeddings [B, Q, E]
_MasksAndEmbeds = tuple[list[Tensor], list[Tensor]]


class LayerPrediction(TypedDict):
    """One decoder prediction: ``pred_masks`` [B, Q, H/4, W/4], ``pred_embeds`` [B, Q, E],
    ``pred_logits`` [B, Q, K+1]."""

    pred_masks: Tensor
    pred_embeds: Tensor
    pred_logits: Tensor


class Mask2FormerOutput(LayerPrediction):
    """:meth:`Mask2Former.forward`: the last prediction plus ``aux_outputs``, the L earlier ones."""

    aux_outputs: list[LayerPrediction]


class MaskFormerHead(nn.Module):
    """``sem_seg_head``: the pixel decoder and the transformer decoder (``predictor``)."""

    def __init__(self, *, pixel_decoder: MSDeformAttnPixelDecoder,
                 predictor: MultiScaleMaskedTransformerDecoder) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    def forward(self, features: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Backbone features -> per-prediction mask logits [B,Q,H/4,W/4] and embeddings [B,Q,E] (L+1 each)."""
        mask_features, multi_scale_features = self.pixel_decoder(features)
        return cast(_MasksAndEmbeds, self.predictor(multi_scale_features, mask_features))


class Mask2Former(nn.Module):
    """Class-agnostic masks plus one embedding per query, classified by a replaceable head.

    Input ``images``: float32 [B, 3, H, W], normalised (detectron2 ImageNet mean/std, 0–255 scale),
    H and W multiples of 32 (padding is the caller's job).
    """

    size_divisibility = 32

    def __init__(self, *, backbone: ResNet, sem_seg_head: MaskFormerHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head

    @property
    def class_head(self) -> ClassifierHead:
        """The current classifier, Linear(E, K + 1) (stored at ``sem_seg_head.predictor.class_embed``)."""
        return self.sem_seg_head.predictor.class_embed

    def set_class_head(self, head: ClassifierHead) -> None:
        """Replace the classifier (e.g. with one fitted for a new category set)."""
        if not isinstance(head, ClassifierHead):
            raise TypeError(f"head must be a ClassifierHead, got {type(head).__name__}")
        if head.embed_dim != self.embed_dim:
            raise ValueError(f"head takes {head.embed_dim}-d embeddings but the model makes {self.embed_dim}-d")
        self.sem_seg_head.predictor.class_embed = head

    @property
    def embed_dim(self) -> int:
        """E, the width of the query embeddings."""
        return self.sem_seg_head.predictor.decoder_norm.normalized_shape[0]

    @property
    def num_queries(self) -> int:
        """Q."""
        return self.sem_seg_head.predictor.num_queries

    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.size_divisibility or w % self.size_divisibility:
            raise ValueError(f"images H×W = {h}×{w} must be multiples of {self.size_divisibility}; pad them first "
                             "(zsp_ros.inference.preprocess)")

    def _predictions(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        self._check_images(images)
        return cast(_MasksAndEmbeds, self.sem_seg_head(self.backbone(images)))

    def forward_network(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The part that backends run and ONNX exports (no classifier).

        Returns:
            mask_logits float [B, Q, H/4, W/4] of the last decoder layer,
            query_embeds float [B, Q, E] after the decoder LayerNorm.
        """
        masks, embeds = self._predictions(images)
        return masks[-1], embeds[-1]

    def forward(self, images: Tensor) -> Mask2FormerOutput:
        """All predictions, for training (deep supervision) and PyTorch inference.

        Returns a dict (:class:`Mask2FormerOutput`):
            ``pred_masks`` [B, Q, H/4, W/4], ``pred_embeds`` [B, Q, E], ``pred_logits`` [B, Q, K+1]
            of the last decoder layer, and ``aux_outputs``: a list of L dicts with the same three
            keys for the earlier predictions (index 0 = from the learnable queries alone), L + 1
            predictions in all.
        """
        masks, embeds = self._predictions(images)
        head = self.class_head
        predictions = [LayerPrediction(pred_masks=m, pred_embeds=e, pred_logits=head(e)) for m, e in zip(masks, embeds)]
        last = predictions[-1]
        return Mask2FormerOutput(pred_masks=last["pred_masks"], pred_embeds=last["pred_embeds"],
                                 pred_logits=last["pred_logits"], aux_outputs=predictions[:-1])
