#!/usr/bin/env bash
# The evaluations behind the shipped pipelines' model cards, one command per sweep (DDIM 50 steps, N = 1000 unless
# said; every table carries the real-data floor at the same N). Writes to EVAL_DIR/<dataset>-<sweep>/.
#
#   bash scripts/evaluate_shipped_models.sh mnist|fashion_mnist cfg|classifier-probe|classifier-guidance|thresholding|fp16 [PIPELINE] [EVAL_DIR]
#
#   cfg                  classifier-free guidance scale 0 (unconditional), 1, 3, 5; dynamic thresholding
#   classifier-probe     classifier guidance alone (guidance_scale 0) at scales 1 ... 30, N = 200: finds the range
#   classifier-guidance  classifier guidance alone at the scales of CLASSIFIER_SCALES (default "3 10 30"), N = 1000
#   thresholding         none vs static vs dynamic at a high CFG scale (8), N = 500
#   fp16                 PIPELINE = the fp32 training run (runs/<dataset>) at CFG 3, beside the fp16-stored folder's cfg row
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: mnist or fashion_mnist}
sweep=${2:?sweep: cfg, classifier-probe, classifier-guidance, thresholding or fp16}
name=${dataset//_/-}
pipeline=${3:-checkpoints/$name}
eval_dir=${4:-eval}
evaluate=(.venv/bin/python training/evaluate.py --pipeline "$pipeline" --eval_classifier "checkpoints/$name-eval-classifier"
          --dataset_name "$dataset" --samplers ddim --num_inference_steps 50 --batch_size 100)
case "$sweep" in
  cfg)
    exec "${evaluate[@]}" --num_samples 1000 --guidance_scales 0 1 3 5 --thresholding dynamic --output_dir "$eval_dir/$name-cfg" ;;
  classifier-probe)
    exec "${evaluate[@]}" --num_samples 200 --no_efficientnet --guidance_scales 0 --classifier_scales 0 1 3 10 30 \
      --output_dir "$eval_dir/$name-classifier-probe" ;;
  classifier-guidance)
    # shellcheck disable=SC2086
    exec "${evaluate[@]}" --num_samples 1000 --guidance_scales 0 --classifier_scales ${CLASSIFIER_SCALES:-3 10 30} \
      --output_dir "$eval_dir/$name-classifier-guidance" ;;
  thresholding)
    exec "${evaluate[@]}" --num_samples 500 --guidance_scales 8 --thresholding none static dynamic \
      --output_dir "$eval_dir/$name-thresholding" ;;
  fp16)
    [ -n "${3:-}" ] || { echo "fp16: give the fp32 training run folder as PIPELINE" >&2; exit 2; }
    exec "${evaluate[@]}" --num_samples 1000 --guidance_scales 3 --thresholding dynamic --output_dir "$eval_dir/$name-fp32" ;;
  *) echo "sweep must be cfg, classifier-probe, classifier-guidance, thresholding or fp16; got $sweep" >&2; exit 2 ;;
esac
