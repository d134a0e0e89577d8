#!/usr/bin/env bash
# The evaluations behind the shipped pipelines' model cards, one command per sweep (DDIM 50 steps, N = 1000 unless
# said; the text sweeps sample with the folder's own DDPM, 50 steps, as every published text row did; every table
# carries the real-data floor at the same N). Writes to EVAL_DIR/<dataset>-<sweep>/.
#
#   bash scripts/evaluate_shipped_models.sh mnist|fashion_mnist SWEEP [PIPELINE] [EVAL_DIR]
#
# PYTHON names the interpreter (default .venv/bin/python, as scripts/setup.sh makes it). Sampling runs on a GPU
# where there is one (the scripts' --device default), from the same seeded noise as on a CPU. The image sweeps
# resume: run the same line again after an interruption and it re-uses every finished batch of samples.
#
#   cfg                  classifier-free guidance at the scales of GUIDANCE_SCALES (default "0 1 3 5"; 0 is
#                        unconditional); static clipping (none for latents)
#   classifier-probe     classifier guidance alone (guidance_scale 0) at scales 1 ... 30, N = 200: finds the range
#   classifier-guidance  classifier guidance alone at the scales of CLASSIFIER_SCALES (default "3 10 30"), N = 1000
#   thresholding         static vs dynamic at a high CFG scale (8), N = 500
#   inversion            DDIM inversion + reconstruction MSE of 32 held-out images against steps (10 ... 250),
#                        unconditional and CFG 3, plain and with one fixed-point iteration (training/evaluate_inversion.py)
#   inversion-cfg++      CFG++'s claim for inversion: CFG at w = 3, 5 against CFG++ at lambda = 0.2, 0.4, 0.6, 32 held-out
#                        images, 10 ... 100 DDIM steps, no fixed-point iteration
#   quality-per-step     benchmarks/quality_per_step.py at the steps of STEPS (default "10 20 50"), N = 500, for the
#                        samplers of SAMPLERS (default: all fourteen) on the same UNet; resumable: run the same line again
#                        after an interruption and it re-uses every finished batch. DPM-Solver takes at most 999
#                        steps of the 1,000-step schedule, so on a GPU: STEPS="10 20 50 100 250 1000"
#                        SAMPLERS="ddpm ddim ddim-eta1 diffusers-ddim", then STEPS=999 SAMPLERS="dpm2m dpm++" with
#                        another EVAL_DIR
#   samplers-per-call    quality-per-step at equal cost (issue 28): each sampler of SAMPLERS (default DDPM, DDIM,
#                        DPM-Solver++(2M) on uniform and Karras levels, EDM Heun (also ending at sigma_min 0.1) and
#                        Euler, the reverse SDE by Euler-Maruyama and by reverse diffusion, and predictor-corrector)
#                        gets the most steps whose network calls per image fit each budget of BUDGETS (default
#                        "10 20 50 100"; Heun takes 2N - 1 calls, predictor-corrector 2N), N = 500; resumable (run
#                        BUDGETS="10 20" first, then the full line re-uses those rows' samples)
#   solvers              quality-per-step for ours and diffusers' DPM-Solver++(2M) only, side by side, 10 and 20 steps
#   guidance-methods     the guidance methods side by side (issue 24), each at a few scales of its own, DPM-Solver++(2M)
#                        20 steps, N = 1000: CFG (and CFG rescale 0.7), CFG in a sigma interval, scheduled CFG
#                        (linear, cosine), APG in x0 space, diffusers' CFG-Zero*, TCFG and MAG, autoguidance with the
#                        pipeline's weak_unet, CFG++ at lambda = 0.1, 0.2, 0.4, the unconditional model steered by
#                        the noise-aware classifier (ADM) and by the clean one through x0_hat (universal guidance), and
#                        diffusers' AutoGuidance (the mid-block attention dropped); UNet evaluations and seconds per
#                        image in every row, fronts.png (accuracy-FD, precision-recall); METHODS overrides the list
#                        of guider specs; SEED (default 0) draws other noise and real images (the same labels), written to
#                        <name>-guidance-methods-seed<SEED> (the seed-to-seed spread of a point at the same N)
#   guidance-methods-ddim  the same with DDIM 50 steps (SEED too)
#   text                 a text-to-image pipeline (PIPELINE defaults to checkpoints/<dataset>-text): prompt alignment,
#                        FD (own) and saturation on the 120 held-out prompts x 2 images, w = 1, 3, 5, 10, 15, with no
#                        thresholding, static clipping and dynamic thresholding (training/evaluate_text_to_image.py)
#   text-clip            GLIDE's comparison (issue 27) on the text pipeline, held-out prompts x 2 images, DDPM 50, no
#                        thresholding: CFG (w = 0, 1, 3, 5), CLIP guidance with the pipeline's noise-aware clip_model
#                        (or GUIDING_CLIP) on the conditional (s = 10, 30) and the unconditional branch (s = 10, 30,
#                        60), and CFG 3 + CLIP (s = 10, 30);
#                        graded by the clean CLIP of CLIP_SCORE (default checkpoints/<dataset>-clip-score) and the
#                        evaluation classifier; UNet and CLIP evaluations per image in every row; METHODS overrides
#   text-train-prompts   the same on the training split's prompts (150 x 2 images), w = 1, 3, 5, 10, no thresholding:
#                        how much of the held-out gap is the unseen wording
#   text-thresholding    static clipping against dynamic thresholding at each percentile p of |x0| in 0.5, 0.8, 0.9,
#                        0.95, 0.995 (Imagen's), at the guidance scales of GUIDANCE_SCALES (default "10"), held-out
#                        prompts: for a pixel-space model (the text recipe), where Imagen's claim applies
#   text-cascade         a text cascade (PIPELINE defaults to runs/<dataset>-text-cascade, made by
#                        examples/compose_text_cascade.py) on the 30 held-out one-item prompts x 34 images (N = 1020),
#                        CFG w = 1, 3, 5 (GUIDANCE_SCALES), DPM-Solver++(2M) 20 + 20 steps, a = 0.2, static clipping;
#                        one-item alignment, FD (own and EfficientNet-Lite0), UNet evaluations of both stages
#   text-one-item        the text pipeline (checkpoints/<dataset>-text) on the same prompts and settings, its items
#                        cropped from the 28x56 canvas: the text cascade's single-stage comparison
#   cascade              a cascade (PIPELINE defaults to checkpoints/<dataset>-cascade; training/evaluate_cascade.py):
#                        generation at CFG scales GUIDANCE_SCALES (default "1 3") x augmentation levels LEVELS
#                        (default "0 0.1 0.2 0.4 0.7") against the single-stage checkpoints/<dataset> (DPM-Solver++(2M), 20 + 20 steps), the
#                        no-augmentation stage of SR_ABLATION (default runs/<dataset>-super-resolution-no-augmentation,
#                        where it exists) swapped in, and super-resolution of real held-out images, N = 1000; the single
#                        stage also at 6 steps, where its FLOPs equal the cascade's 20 + 20 (benchmarks/cascade_cost.py)
set -euo pipefail
set -f  # guider specs hold JSON brackets: never glob them
cd "$(dirname "$0")/.."
dataset=${1:?dataset: mnist or fashion_mnist}
sweep=${2:?sweep: see the list above}
name=${dataset//_/-}
default_pipeline=checkpoints/$name
if [ "${sweep%%-*}" = text ]; then default_pipeline=checkpoints/$name-text; fi
if [ "$sweep" = cascade ]; then default_pipeline=checkpoints/$name-cascade; fi
if [ "$sweep" = text-cascade ]; then default_pipeline=runs/$name-text-cascade; fi
pipeline=${3:-$default_pipeline}
eval_dir=${4:-eval}
python=${PYTHON:-.venv/bin/python}
# pixel models: static clipping, which beat real dynamic thresholding on every quality metric at CFG 8 on MNIST
# (the thresholding sweep; MNIST is 83% saturated pixels, and dividing by s > 1 greys them). A latent model (a
# vae/ folder) is evaluated without thresholding, which bounds pixels, not latents; its results go to
# <dataset>-latent-<sweep>. Text pipelines: the shipped latent one writes <dataset>-text<-sweep>, a pixel-space one
# (the text recipe) <dataset>-pixel-text<-sweep>, so that both fit in one EVAL_DIR
thresholding=static
text_name=$name-pixel-text
if [ -d "$pipeline/vae" ]; then thresholding=none; text_name=$name-text; name=$name-latent; fi
judge=checkpoints/${dataset//_/-}-eval-classifier
evaluate=("$python" training/evaluate.py --pipeline "$pipeline" --eval_classifier "$judge"
          --dataset_name "$dataset" --batch_size 100 --resume)
ddim_50=(--samplers ddim --num_inference_steps 50)  # every evaluate sweep but guidance-methods (DPM-Solver++ 20)
evaluate_text=("$python" training/evaluate_text_to_image.py --pipeline "$pipeline" --eval_classifier "$judge"
               --dataset_name "$dataset" --images_per_prompt 2 --no_efficientnet)
methods="cfg:guidance_scale=1 cfg:guidance_scale=2 cfg:guidance_scale=3 cfg:guidance_scale=5
  cfg:guidance_scale=3,guidance_rescale=0.7 interval:guidance_scale=3 interval:guidance_scale=5
  scheduled:guidance_scale=3 scheduled:guidance_scale=5 scheduled:guidance_scale=3,schedule=cosine
  apg:guidance_scale=3,eta=0 apg:guidance_scale=5,eta=0 apg:guidance_scale=8,eta=0
  cfg-zero-star:guidance_scale=3 cfg-zero-star:guidance_scale=5 tcfg:guidance_scale=3 tcfg:guidance_scale=5
  mag:guidance_scale=3 mag:guidance_scale=5,alpha=50
  autoguidance:guidance_scale=2 autoguidance:guidance_scale=3
  cfg++:guidance_scale=0.1 cfg++:guidance_scale=0.2 cfg++:guidance_scale=0.4
  classifier:classifier_scale=10,prediction=pred_uncond classifier:classifier_scale=30,prediction=pred_uncond
  universal:classifier_scale=10,prediction=pred_uncond universal:classifier_scale=30,prediction=pred_uncond
  autoguidance-diffusers:guidance_scale=3,auto_guidance_config={\"indices\":[0],\"fqn\":\"mid_block.attentions\",\"skip_ff\":false}"
# GLIDE's comparison (issue 27): CFG, CLIP guidance on the conditional and the unconditional branch, and both; the
# CLIP scales from a probe (N = 120, mnist-text): at s = 100 on either branch two-item alignment fell to 44-50%
# one-item prompts x 34 images (N = 1020, the cascade sweeps' N), with EfficientNet FD: a text cascade and its comparison
one_item=("$python" training/evaluate_text_to_image.py --pipeline "$pipeline" --eval_classifier "$judge"
          --dataset_name "$dataset" --one_item_prompts --images_per_prompt 34 --sampler dpm2m --num_inference_steps 20
          --batch_size 102)
clip_methods="cfg:guidance_scale=0 cfg:guidance_scale=1 cfg:guidance_scale=3 cfg:guidance_scale=5 clip:clip_scale=10
  clip:clip_scale=30 clip:clip_scale=10,prediction=pred_uncond clip:clip_scale=30,prediction=pred_uncond
  clip:clip_scale=60,prediction=pred_uncond cfg:guidance_scale=3&clip:clip_scale=10 cfg:guidance_scale=3&clip:clip_scale=30"
seed=${SEED:-0}
seed_suffix=""
if [ "$seed" != 0 ]; then seed_suffix=-seed$seed; fi
case "$sweep" in
  guidance-methods)
    # shellcheck disable=SC2086
    exec "${evaluate[@]}" --samplers dpm2m --num_inference_steps 20 --num_samples 1000 --thresholding "$thresholding" \
      --guiders ${METHODS:-$methods} --seed "$seed" --output_dir "$eval_dir/$name-guidance-methods$seed_suffix" ;;
  guidance-methods-ddim)
    # shellcheck disable=SC2086
    exec "${evaluate[@]}" "${ddim_50[@]}" --num_samples 1000 --thresholding "$thresholding" --guiders ${METHODS:-$methods} \
      --seed "$seed" --output_dir "$eval_dir/$name-guidance-methods-ddim$seed_suffix" ;;
  cfg)
    # shellcheck disable=SC2086
    exec "${evaluate[@]}" "${ddim_50[@]}" --num_samples 1000 --guidance_scales ${GUIDANCE_SCALES:-0 1 3 5} --thresholding "$thresholding" --output_dir "$eval_dir/$name-cfg" ;;
  classifier-probe)
    exec "${evaluate[@]}" "${ddim_50[@]}" --num_samples 200 --no_efficientnet --guidance_scales 0 --classifier_scales 0 1 3 10 30 \
      --output_dir "$eval_dir/$name-classifier-probe" ;;
  classifier-guidance)
    # shellcheck disable=SC2086
    exec "${evaluate[@]}" "${ddim_50[@]}" --num_samples 1000 --guidance_scales 0 --classifier_scales ${CLASSIFIER_SCALES:-3 10 30} \
      --output_dir "$eval_dir/$name-classifier-guidance" ;;
  thresholding)
    exec "${evaluate[@]}" "${ddim_50[@]}" --num_samples 500 --guidance_scales 8 --thresholding static dynamic \
      --output_dir "$eval_dir/$name-thresholding" ;;
  inversion)
    exec "$python" training/evaluate_inversion.py --pipeline "$pipeline" --dataset_name "$dataset" --num_images 32 \
      --batch_size 32 --num_inference_steps 10 20 50 100 250 --guidance_scales 0 3 --fixed_point_iterations 0 1 \
      --output_dir "$eval_dir/$name-inversion" ;;
  inversion-cfg++)
    exec "$python" training/evaluate_inversion.py --pipeline "$pipeline" --dataset_name "$dataset" --num_images 32 \
      --batch_size 32 --num_inference_steps 10 20 50 100 --guidance_scales 0 3 5 --cfg_plus_plus_scales 0.2 0.4 0.6 \
      --output_dir "$eval_dir/$name-inversion-cfg++" ;;
  quality-per-step)
    # shellcheck disable=SC2086
    exec "$python" benchmarks/quality_per_step.py --pipeline "$pipeline" --eval_classifier \
      "$judge" --dataset_name "$dataset" --num_samples 500 --steps ${STEPS:-10 20 50} --thresholding "$thresholding" \
      ${SAMPLERS:+--samplers $SAMPLERS} --output_dir "$eval_dir/$name-quality-per-step" --resume ;;
  samplers-per-call)
    # shellcheck disable=SC2086
    exec "$python" benchmarks/quality_per_step.py --pipeline "$pipeline" --eval_classifier "$judge" \
      --dataset_name "$dataset" --num_samples 500 --budgets ${BUDGETS:-10 20 50 100} --thresholding "$thresholding" \
      --samplers ${SAMPLERS:-ddpm ddim dpm2m dpm2m-karras heun heun-sigma-min-0.1 euler sde reverse-diffusion pc} \
      --output_dir "$eval_dir/$name-samplers-per-call" --resume ;;
  solvers)
    exec "$python" benchmarks/quality_per_step.py --pipeline "$pipeline" --eval_classifier "$judge" \
      --dataset_name "$dataset" --num_samples 500 --steps 10 20 --samplers dpm2m dpm++ --thresholding "$thresholding" \
      --output_dir "$eval_dir/$name-solvers" ;;
  cascade)
    ablation=${SR_ABLATION:-runs/$name-super-resolution-no-augmentation}
    swapped=()
    if [ -f "$ablation/model_index.json" ]; then swapped=(--super_resolution "$ablation"); fi
    # shellcheck disable=SC2086
    exec "$python" training/evaluate_cascade.py --cascade "$pipeline" --eval_classifier "$judge" --dataset_name "$dataset" \
      --single_stage "checkpoints/$name" --single_stage_steps 20 6 "${swapped[@]}" --guidance_scales ${GUIDANCE_SCALES:-1 3} \
      --augmentation_levels ${LEVELS:-0 0.1 0.2 0.4 0.7} --sampler dpm2m --num_inference_steps 20 --super_resolution_steps 20 \
      --thresholding "$thresholding" --num_samples 1000 --batch_size 100 --output_dir "$eval_dir/$name-cascade" --resume ;;
  text)
    exec "${evaluate_text[@]}" --guidance_scales 1 3 5 10 15 --thresholding none static dynamic --batch_size 120 \
      --output_dir "$eval_dir/$text_name" ;;
  text-train-prompts)
    exec "${evaluate_text[@]}" --prompt_split train --guidance_scales 1 3 5 10 --thresholding none --batch_size 150 \
      --output_dir "$eval_dir/$text_name-train-prompts" ;;
  text-thresholding)
    # shellcheck disable=SC2086
    exec "${evaluate_text[@]}" --guidance_scales ${GUIDANCE_SCALES:-10} --thresholding static dynamic \
      --dynamic_thresholding_ratios 0.5 0.8 0.9 0.95 0.995 --batch_size 120 \
      --output_dir "$eval_dir/$text_name-thresholding" ;;
  text-clip)
    # shellcheck disable=SC2086
    exec "${evaluate_text[@]}" --guiders ${METHODS:-$clip_methods} ${GUIDING_CLIP:+--guiding_clip "$GUIDING_CLIP"} \
      --clip_model "${CLIP_SCORE:-checkpoints/${dataset//_/-}-clip-score}" --thresholding none --batch_size 120 \
      --output_dir "$eval_dir/$text_name-clip" ;;
  text-cascade)
    # shellcheck disable=SC2086
    exec "${one_item[@]}" --guidance_scales ${GUIDANCE_SCALES:-1 3 5} --thresholding static --super_resolution_steps 20 \
      --augmentation_level 0.2 --output_dir "$eval_dir/$name-text-cascade" ;;
  text-one-item)
    # shellcheck disable=SC2086
    exec "${one_item[@]}" --guidance_scales ${GUIDANCE_SCALES:-1 3 5} --thresholding "$thresholding" \
      --output_dir "$eval_dir/$text_name-one-item" ;;
  *) echo "sweep must be guidance-methods, guidance-methods-ddim, cfg, classifier-probe, classifier-guidance, thresholding, inversion, inversion-cfg++, quality-per-step, samplers-per-call, solvers, cascade, text, text-train-prompts, text-thresholding, text-clip, text-cascade or text-one-item;" \
       "got $sweep" >&2; exit 2 ;;
esac
