#!/usr/bin/env bash
# A COCO zero-shot panoptic (ZSP 119 seen / 14 unseen) kit on one machine with 8 GPUs.
#   training/coco_zsp_kit.sh COCO_DIR CLIP_WEIGHTS [GPUS]
# Not run here (no COCO, no GPU); every stage was run on a COCO-format mini dataset by
# tests/test_real_data_e2e.py. Each torchrun stage resumes when re-run with --resume after a stop.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COCO="$1"; CLIP="$2"; GPUS="${3:-8}"
zsp() { .venv/bin/zsp "$@"; }

zsp data check --coco "$COCO"
zsp data prepare --coco "$COCO"                                   # ZSP view (the paper keeps 45,617 images)
zsp embed --encoder clip-vit-b-16 --weights "$CLIP" --classes zsp --out runs/emb_zsp.safetensors
.venv/bin/torchrun --nproc_per_node "$GPUS" -m zsp_ros.training.train_segmenter \
    --config config/r50_coco_panoptic.yaml --coco "$COCO" --protocol zsp --out runs/seg_zsp
zsp train bank --segmenter runs/seg_zsp --coco "$COCO" --protocol zsp --out runs/bank_zsp.safetensors --device cuda
.venv/bin/torchrun --nproc_per_node "$GPUS" -m zsp_ros.training.train_pading --bank runs/bank_zsp.safetensors \
    --segmenter runs/seg_zsp --config config/pading_coco.yaml --clip-weights "$CLIP" --out runs/pading_zsp --device cuda
zsp train kit --segmenter runs/seg_zsp --pading runs/pading_zsp --bank runs/bank_zsp.safetensors \
    --out kits/coco_zsp --short-side 800 --max-long-side 1333
