#!/usr/bin/env bash
# The recipe of zsp_ros/kits/default (the embedded kit): the commands as they were run, in order.
# Its README (zsp_ros/kits/default/README.md) records the exact last command, hashes and metrics.
#   training/synthetic_default_kit.sh [WORK_DIR]      (default: data/ and runs/ in the repository)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
W="${1:-.}"
zsp() { .venv/bin/zsp "$@"; }

zsp synth --out "$W/data/world" --images 6000 --val-images 500 --size 128 --seed 0 --preview
zsp train segmenter --config config/synth_small.yaml --data "$W/data/world" --out "$W/runs/seg"   # 3,000 iterations
zsp train segmenter --out "$W/runs/seg" --data "$W/data/world" --resume --iters 5500               # extended twice
zsp train segmenter --out "$W/runs/seg" --data "$W/data/world" --resume --iters 14500              # ~2.9 h CPU in all
zsp train segmenter --out "$W/runs/seg" --data "$W/data/world" --eval-only                         # seen PQ 34.5
# second stage on more images with scale jitter: seen PQ 39.2 (the kit's segmenter until session 11)
zsp synth --out "$W/data/world20k" --images 20000 --val-images 500 --size 128 --seed 0   # same first 6,000 + val
mkdir -p "$W/runs/seg_jit" && cp -r "$W/runs/seg/checkpoints" "$W/runs/seg/categories.json" "$W/runs/seg_jit/"
zsp train segmenter --config config/synth_small_jitter.yaml --data "$W/data/world20k" --out "$W/runs/seg_jit" --resume
# stage 2-3 settings and the panoptic threshold were chosen on a separate tuning world
# (results/tuning_jitter/README.md): unseen weight 5, 500 fakes per class, threshold 0.3
.venv/bin/python -m experiments zeroshot --data "$W/data/world" --segmenter "$W/runs/seg_jit" --seeds 3 \
    --set class_weights.unseen=5 --set final_head.fakes_per_class=500 --object-mask-threshold 0.3 \
    --out results --tag final
run="$(ls -d "$W"/runs/seg_jit/zeroshot/runs/minilm-l6-v2/*/pading_seed0 | head -1)"
bank="$(ls "$W"/runs/seg_jit/zeroshot/bank_zsp_*.safetensors | head -1)"
zsp train kit --segmenter "$W/runs/seg_jit" --pading "$run" --bank "$bank" --out "$W/kit_seg_jit" \
    --data "$W/data/world" --benchmark results/zeroshot_final.json --object-mask-threshold 0.3 \
    --synthetic-per-category 500                                 # the kit until session 11 (39.2 seen PQ)
# third stage (session 11): that kit's network trained 9,000 more iterations. Its run's checkpoints
# were gone, so it starts from the kit (--init-from: network + seen head, fresh AdamW) with the poly
# schedule placed at 20,500 of 29,500, as session 5's resume of the run had it (results/segmenter_long/)
zsp train segmenter --config config/synth_small_jitter.yaml --data "$W/data/world20k" --out "$W/runs/seg_long" \
    --init-from "$W/kit_seg_jit" --start-iteration 20500 --iters 29500              # ~50 min, 2 cores
zsp train segmenter --eval-only --out "$W/runs/seg_long" --data "$W/data/world20k"
.venv/bin/python -m experiments zeroshot --data "$W/data/world" --segmenter "$W/runs/seg_long" --seeds 3 \
    --set class_weights.unseen=5 --set final_head.fakes_per_class=500 --object-mask-threshold 0.3 \
    --out results --tag long
run="$(ls -d "$W"/runs/seg_long/zeroshot/runs/minilm-l6-v2/*/pading_seed0 | head -1)"
bank="$(ls "$W"/runs/seg_long/zeroshot/bank_zsp_*.safetensors | head -1)"
zsp train kit --segmenter "$W/runs/seg_long" --pading "$run" --bank "$bank" --out "$W/kit_seg_long" \
    --data "$W/data/world" --benchmark results/zeroshot_long.json --object-mask-threshold 0.3 \
    --synthetic-per-category 500                                 # the session-11 kit (48.5 seen PQ)
# fourth stage (sessions 11-12): the session-11 kit's network trained the same 9,000 iterations again
# (results/segmenter_kit_long2/: seen PQ 53.5)
zsp train segmenter --config config/synth_small_jitter.yaml --data "$W/data/world20k" --out "$W/runs/seg_long2" \
    --init-from "$W/kit_seg_long" --start-iteration 20500 --iters 29500             # ~53 min, 2 cores
zsp train segmenter --eval-only --out "$W/runs/seg_long2" --data "$W/data/world20k"
.venv/bin/python -m experiments zeroshot --data "$W/data/world" --segmenter "$W/runs/seg_long2" --seeds 3 \
    --set class_weights.unseen=5 --set final_head.fakes_per_class=500 --object-mask-threshold 0.3 \
    --out results --tag long2
# one kit per PADing seed; the one kept (seed 1) was chosen by canonical unseen PQ through the runtime
# registry on the seed-31 development world (results/kit_seed_choice/: seeds 0 / 1 / 2 -> 27.8 / 36.1 /
# 34.9 unseen, every category above 0 only for seed 1), never on the seed-23 evaluation world
run="$(ls -d "$W"/runs/seg_long2/zeroshot/runs/minilm-l6-v2/*/pading_seed1 | head -1)"
bank="$(ls "$W"/runs/seg_long2/zeroshot/bank_zsp_*.safetensors | head -1)"
zsp train kit --segmenter "$W/runs/seg_long2" --pading "$run" --bank "$bank" --out zsp_ros/kits/default \
    --data "$W/data/world" --benchmark results/zeroshot_long2.json --object-mask-threshold 0.3 \
    --synthetic-per-category 500
