#!/usr/bin/env bash
# Trains every bundled model on phantoms (seeds 1-120; 121-150 validate the post-processing;
# 9001-9010 are never used) and registers them in ICHLocalization/Resources/Models.
# Two lanes share the CPU cores; about 3.5 hours on 2 cores, minutes on a GPU (--device auto picks it).
# Both MIL detectors are tuned with the paper's budget (10 + 150 Bayesian-optimization steps) on
# the 30 validation scans.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-phantom:1-120}
mkdir -p runs
# seeds 151-300 only feed the cascade's second round (the U-Net and MIL models train on 1-120)
# (and the bleed-free twins of 1-120, which both MIL models train on)
"$BIN/python" -c "from ICHTrainingLib.datasets.phantom import build_cache; build_cache(range(1, 301), 'cache/phantom', workers=2); build_cache(range(1, 121), 'cache/phantom', workers=2, twins=True)" \
  > runs/cache.log 2>&1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# MIL, both variants: batches of bleed slices paired with their bleed-free twins (12 epochs, then 15 more)
( "$BIN/ich-train" mil --variant maxpool --data "$DATA" --bleed-free-twins --epochs 12 --out runs/mil-pairs12 \
    --workers 1 > runs/mil-pairs12.log 2>&1 &&
  "$BIN/ich-train" mil --variant maxpool --data "$DATA" --bleed-free-twins --init runs/mil-pairs12/mil-maxpool.pt \
    --epochs 15 --out runs/mil-pairs27 --register --workers 1 > runs/mil-pairs27.log 2>&1 &&
  "$BIN/ich-train" mil --variant attention --data "$DATA" --bleed-free-twins --epochs 12 --out runs/mil-attention-pairs12 \
    --workers 1 > runs/mil-attention-pairs12.log 2>&1 &&
  "$BIN/ich-train" mil --variant attention --data "$DATA" --bleed-free-twins --init runs/mil-attention-pairs12/mil-attention.pt \
    --epochs 15 --out runs/mil-attention-pairs27 --register --workers 1 > runs/mil-attention-pairs27.log 2>&1 &&
  "$BIN/ich-tune" --data phantom:121-150 --iter 150 --save > runs/tune-maxpool.log 2>&1 &&
  "$BIN/ich-tune" --data phantom:121-150 --iter 150 --model mil-attention-phantom --save > runs/tune-attention.log 2>&1 ) &
lane_a=$!
( "$BIN/ich-train" unet --data "$DATA" --epochs 30 --out runs/unet30 --workers 1 > runs/unet30.log 2>&1 &&
  "$BIN/ich-train" unet --init runs/unet30/unet.pt --balance subtype --lr 3e-4 --epochs 24 --data "$DATA" \
    --out runs/unet-ft --workers 1 > runs/unet-ft.log 2>&1 &&
  "$BIN/ich-train" unet --init runs/unet-ft/unet.pt --balance subtype --batch-dice --lr 3e-4 --epochs 20 \
    --data "$DATA" --out runs/unet-bd --workers 1 > runs/unet-bd.log 2>&1 &&
  "$BIN/ich-train" unet --init runs/unet-bd/unet.pt --balance subtype --batch-dice --context-mm 5 --lr 3e-4 \
    --epochs 20 --data "$DATA" --out runs/unet-25d --register --workers 1 > runs/unet-25d.log 2>&1 &&
  "$BIN/ich-tune" --method unet --data phantom:121-150 --save > runs/tune-unet.log 2>&1 ) &
lane_b=$!
"$BIN/ich-train" cascade --data "$DATA" --epochs 12 --out runs/cascade12 --workers 1 > runs/cascade12.log 2>&1 &&
"$BIN/ich-train" cascade --init runs/cascade12/cascade.pt --data phantom:1-120,151-300 --epochs 10 --out runs/cascade270 \
  --workers 1 > runs/cascade270.log 2>&1 &&
# the axial plane, the weakest, 15 epochs more on its own (coronal and sagittal kept as they are)
"$BIN/ich-train" cascade --planes axial --init runs/cascade270/cascade.pt --data phantom:1-120,151-300 --epochs 15 \
  --out runs/casc-axial15 --register --workers 1 > runs/casc-axial15.log 2>&1 &&
"$BIN/ich-tune" --method cascade --data phantom:121-150 --save > runs/tune-cascade.log 2>&1
wait $lane_a $lane_b
# the phantom models, out of sample on every real scan (they are still the defaults here)
"$BIN/ich-evaluate" --data ctich-jpg:folds=0-4 --out runs/eval-phantom-models-ctich-jpg &&
"$BIN/ich-evaluate" --data phe:folds=0-4 --out runs/eval-phantom-models-phe
# real CT (needs ../shared/data or ICH_DATA): the max-pool MIL fine-tuned on folds 0-3 of CT-ICH and PHE-SICH
# (slice labels only), its detector tuned on the same folds' PHE boxes; fold 4 is held out for evaluation.
# It is registered as mil-maxpool-real.pt beside the phantom MIL it started from (ids from the --data).
"$BIN/ich-train" mil --data ctich-jpg:folds=0-3,phe:folds=0-3 --init runs/mil-pairs27/mil-maxpool.pt --epochs 6 \
  --lr 3e-4 --out runs/mil-real-f4 > runs/mil-real-f4.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/mil-real-f4 mil-maxpool-real.pt &&
"$BIN/ich-tune" --method mil --data phe:folds=0-3 --model mil-maxpool-real --iter 60 --save > runs/tune-mil-real.log 2>&1 &&
"$BIN/ich-evaluate" --data phe:folds=4 --methods mil --out runs/eval-mil-real-phe4 &&
"$BIN/ich-evaluate" --data ctich-jpg:folds=4 --methods mil --out runs/eval-mil-real-ctich4
# the U-Net's slice gate from the same folds' slice labels (+ phantoms 1-40); the U-Net and its tuned settings kept
"$BIN/ich-train" unet --gate-only --init ICHLocalization/Resources/Models/unet.pt \
  --data ctich-jpg:folds=0-3,phe:folds=0-3,phantom:1-40 --epochs 8 --lr 3e-4 --out runs/unet-gate-real-f4 \
  --workers 1 > runs/unet-gate-real-f4.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/unet-gate-real-f4 unet-gate-real.pt &&
"$BIN/ich-evaluate" --data ctich-jpg:folds=4 --methods unet --out runs/eval-unet-gate-ctich4 &&
"$BIN/ich-evaluate" --data phe:folds=4 --methods unet --out runs/eval-unet-gate-phe4
# the U-Net itself from the same folds: the clots inside PHE's boxes, CT-ICH's and PHE's bleed-free slices
# (empty masks) and phantoms 1-40 (every subtype, pixel-exact), from the U-Net with the real gate (its
# post-processing carries over); the gate is trained again with it
"$BIN/ich-train" unet --init ICHLocalization/Resources/Models/unet-gate-real.pt --balance subtype --batch-dice \
  --context-mm 5 --lr 3e-4 --epochs 10 --data ctich-jpg:folds=0-3,phe:folds=0-3,phantom:1-40 --out runs/unet-real-f4 \
  --workers 1 > runs/unet-real-f4.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/unet-real-f4 unet-real.pt &&
# its gate and post-processing tuned on the same folds (PHE: Dice to the clots; CT-ICH: its ICH slices)
"$BIN/ich-tune" --method unet --data phe:folds=0-3,ctich-jpg:folds=0-3 --save > runs/tune-unet-real.log 2>&1 &&
"$BIN/ich-evaluate" --data ctich-jpg:folds=4 --methods unet --out runs/eval-unet-tuned-ctich4 &&
"$BIN/ich-evaluate" --data phe:folds=4 --methods unet --out runs/eval-unet-tuned-phe4 &&
"$BIN/python" scripts/held_out_metrics.py unet-real+phantom "fold 4 of ctich-jpg and phe (never trained or tuned on)" \
  ctich-jpg::runs/eval-unet-tuned-ctich4/report.json phe::runs/eval-unet-tuned-phe4/report.json
# the cascade from the same folds (CT-ICH's slice subtypes teach its axial nets, PHE's boxes all three planes)
# and phantoms 1-40 (every subtype, every plane), from the phantom cascade
"$BIN/ich-train" cascade --init ICHLocalization/Resources/Models/cascade.pt \
  --data ctich-jpg:folds=0-3,phe:folds=0-3,phantom:1-40 --epochs 6 --lr 3e-4 --out runs/cascade-real-f4 \
  --workers 2 > runs/cascade-real-f4.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/cascade-real-f4 cascade-real.pt &&
# its fusion tuned on the same folds: PHE's boxes per slice and CT-ICH's subtypes per slice (one ascent pass)
"$BIN/ich-tune" --method cascade --data ctich-jpg:folds=0-3,phe:folds=0-3 --rounds 1 --save > runs/tune-cascade-real.log 2>&1 &&
"$BIN/ich-evaluate" --data ctich-jpg:folds=4 --methods cascade --out runs/eval-casc-realtuned-ctich4 &&
"$BIN/ich-evaluate" --data phe:folds=4 --methods cascade --out runs/eval-casc-realtuned-phe4 &&
"$BIN/python" scripts/held_out_metrics.py cascade-real+phantom "fold 4 of ctich-jpg and phe (never trained or tuned on)" \
  ctich-jpg::runs/eval-casc-realtuned-ctich4/report.json phe::runs/eval-casc-realtuned-phe4/report.json
# the MIL recipe out of fold for every patient: its commands above once more per held-out fold k (fold 4's
# runs are those above), each in a scratch catalogue; the five held-out folds pooled into one report
for split in 0:1-4 1:0,2-4 2:0-1,3-4 3:0-2,4; do
  k=${split%%:*} A=${split#*:}
  rm -rf runs/cat-mil-oof-$k && cp -r ICHLocalization/Resources/Models runs/cat-mil-oof-$k &&
  "$BIN/ich-train" mil --data ctich-jpg:folds=$A,phe:folds=$A --init ICHLocalization/Resources/Models/mil-maxpool.pt \
    --epochs 6 --lr 3e-4 --out runs/mil-oof-$k --workers 1 > runs/mil-oof-$k.log 2>&1 &&
  "$BIN/python" scripts/register_run.py runs/mil-oof-$k mil-maxpool-real.pt --models runs/cat-mil-oof-$k &&
  "$BIN/ich-tune" --method mil --data phe:folds=$A --model mil-maxpool-real --iter 60 --save \
    --models runs/cat-mil-oof-$k > runs/tune-mil-oof-$k.log 2>&1 &&
  for d in phe ctich-jpg; do
    "$BIN/ich-evaluate" --data $d:folds=$k --methods mil --models runs/cat-mil-oof-$k --out runs/eval-mil-oof-$k-$d
  done
done
"$BIN/python" scripts/fold_report.py phe 0-4 runs/eval-mil-oof-{0,1,2,3}-phe/scans.json \
  runs/eval-mil-real-phe4/scans.json --methods mil --out runs/eval-mil-oof-phe &&
"$BIN/python" scripts/fold_report.py ctich-jpg 0-4 runs/eval-mil-oof-{0,1,2,3}-ctich-jpg/scans.json \
  runs/eval-mil-real-ctich4/scans.json --methods mil --out runs/eval-mil-oof-ctich-jpg
# the bundled real models: each recipe above again on all five folds (fold 4 no longer held out), from the
# same phantom models; each keeps the post-processing tuned on folds 0-3 and the fold-4 figures of the
# run it replaces (register_run.py --keep-tuning): those figures are the recipe's out-of-fold estimate
ALL=ctich-jpg:folds=0-4,phe:folds=0-4
( "$BIN/ich-train" cascade --init ICHLocalization/Resources/Models/cascade.pt --data $ALL,phantom:1-40 --epochs 6 --lr 3e-4 \
    --out runs/cascade-real-all --workers 1 > runs/cascade-real-all.log 2>&1 &&
  "$BIN/python" scripts/register_run.py runs/cascade-real-all cascade-real.pt --keep-tuning ) &
lane_a=$!
"$BIN/ich-train" mil --data $ALL --init ICHLocalization/Resources/Models/mil-maxpool.pt --epochs 6 --lr 3e-4 --out runs/mil-real-all \
  --workers 1 > runs/mil-real-all.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/mil-real-all mil-maxpool-real.pt --keep-tuning &&
"$BIN/python" scripts/held_out_metrics.py mil-maxpool-real \
  "all 130 patients of ctich-jpg and phe, each scored by the recipe trained and tuned without its fold (five runs)" \
  ctich-jpg::runs/eval-mil-oof-ctich-jpg/report.json phe::runs/eval-mil-oof-phe/report.json \
  --weights "five runs of the same recipe, one per held-out fold (fold 4's: $(sha256sum runs/mil-real-f4/mil-maxpool.pt | cut -c1-12)); these weights add each run's held-out patients" &&
"$BIN/ich-train" unet --gate-only --init ICHLocalization/Resources/Models/unet.pt --data $ALL,phantom:1-40 --epochs 8 --lr 3e-4 \
  --out runs/unet-gate-real-all --workers 1 > runs/unet-gate-real-all.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/unet-gate-real-all unet-gate-real.pt --keep-tuning &&
"$BIN/ich-train" unet --init runs/unet-gate-real-all/unet.pt --balance subtype --batch-dice --context-mm 5 --lr 3e-4 \
  --epochs 10 --data $ALL,phantom:1-40 --out runs/unet-real-all --workers 1 > runs/unet-real-all.log 2>&1 &&
"$BIN/python" scripts/register_run.py runs/unet-real-all unet-real.pt --keep-tuning
wait $lane_a
# the card: each entry's held-out figures from the catalogue, and the phantom models' out-of-sample reports
"$BIN/python" scripts/model_card.py \
  "phantom-trained cascade, MIL (phantom) and U-Net, out of sample::runs/eval-phantom-models-ctich-jpg/report.json" \
  "phantom-trained cascade, MIL (phantom) and U-Net, out of sample::runs/eval-phantom-models-phe/report.json"
