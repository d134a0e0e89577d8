#!/usr/bin/env bash
# The recipes of the shipped models, one resumable command per model: re-run the same line after an interruption
# and it continues from its latest checkpoint. On a CPU give each concurrent run one thread (two 2-thread runs on
# 2 cores ran 20-40x slower); where torch sees a GPU the run takes it (same flags, fp32). ACCELERATE and PYTHON name
# the launcher and interpreter (default: the .venv that scripts/setup.sh makes).
#
#   bash scripts/train_shipped_models.sh mnist unet|weak-unet|classifier|guide-classifier|eval-classifier [RUNS_DIR]
#   bash scripts/train_shipped_models.sh fashion_mnist unet|weak-unet|classifier|guide-classifier|eval-classifier [RUNS_DIR]
#   bash scripts/train_shipped_models.sh mnist vae|latent-unet|latent-classifier [RUNS_DIR]  (latent diffusion)
#   bash scripts/train_shipped_models.sh mnist low-resolution-unet|super-resolution|super-resolution-no-augmentation [RUNS_DIR]
#                                                                          (a cascade, 14x14 -> 28x28; fashion_mnist too;
#                                                                          super-resolution-class-conditional: the stage
#                                                                          told the class too, for CFG on it;
#                                                                          low-resolution-text: a text base at 14x14)
#   bash scripts/train_shipped_models.sh mnist text|latent-text [RUNS_DIR]   (text-to-image; latent-text is shipped; text,
#                                                                          in pixels, measures dynamic thresholding)
#   bash scripts/train_shipped_models.sh mnist clip-latent|clip-items|clip-clean [RUNS_DIR]  (noise-aware CLIPs for CLIP
#                                                                          guidance of the text and class models; a
#                                                                          clean one for CLIP score)
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: mnist or fashion_mnist}
model=${2:?model: unet, weak-unet, classifier, guide-classifier, eval-classifier, vae, latent-unet, latent-classifier, text, latent-text, clip-latent, clip-items, clip-clean, low-resolution-unet, low-resolution-text, super-resolution, super-resolution-no-augmentation or super-resolution-class-conditional}
runs=${3:-runs}
name=${dataset//_/-}
launch=("${ACCELERATE:-.venv/bin/accelerate}" launch --num_processes 1 --mixed_precision no)
if ! "${PYTHON:-.venv/bin/python}" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  launch+=(--num_cpu_threads_per_process 1 --cpu)
fi
common=(--dataset_name "$dataset" --train_batch_size 64 --lr_scheduler cosine --use_ema --checkpointing_steps 250
        --checkpoints_total_limit 2 --logging_steps 50 --resume_from_checkpoint latest)
case "$model" in
  unet)  # small 3.6M UNet, class-conditional with a null class for CFG, min-SNR-5 (see issue notes); 5,000 steps
         # fit one CPU core in ~1.5 h (a preview at step 1,750 already had 100% accuracy at CFG 3)
    exec "${launch[@]}" training/train_unet.py "${common[@]}" --class_conditional --label_dropout 0.2 \
      --model_config small --max_train_steps 5000 --learning_rate 1e-3 --lr_warmup_steps 500 --snr_gamma 5 \
      --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name" ;;
  weak-unet)  # autoguidance's weak model (Karras 2024): the unet recipe (same data, conditioning, schedule and loss) on
              # the tiny preset (0.16M parameters, 1/22 of the small UNet's 3.6M) for 1,500 steps instead of 5,000
    exec "${launch[@]}" training/train_unet.py "${common[@]}" --class_conditional --label_dropout 0.2 \
      --model_config tiny --max_train_steps 1500 --learning_rate 1e-3 --lr_warmup_steps 100 --snr_gamma 5 \
      --ema_max_decay 0.999 --save_images_steps 500 --output_dir "$runs/$name-weak" ;;
  classifier)  # noise-aware classifier on the UNet's schedule (linear, 1000 steps); Fashion-MNIST's got half the
               # steps of MNIST's to fit one session's CPU time beside its UNet
    steps=$([ "$dataset" = fashion_mnist ] && echo 3000 || echo 6000)
    exec "${launch[@]}" training/train_classifier.py "${common[@]}" --ddpm_num_steps 1000 --ddpm_beta_schedule linear \
      --model_config small --pooling attention --max_train_steps "$steps" --learning_rate 5e-4 --lr_warmup_steps 200 \
      --adam_weight_decay 0.05 --ema_max_decay 0.999 --output_dir "$runs/$name-classifier" ;;
  guide-classifier)  # universal guidance's clean-image classifier (Bansal 2023): the eval-classifier recipe on the tiny
                     # preset with another seed and fewer steps, so that the guiding classifier is never the judge
    exec "${launch[@]}" training/train_classifier.py "${common[@]}" --noise_free --model_config tiny --pooling mean \
      --seed 1 --max_train_steps 1500 --learning_rate 1e-3 --lr_warmup_steps 100 --adam_weight_decay 0.05 \
      --ema_max_decay 0.999 --eval_max_samples 10000 --output_dir "$runs/$name-guide-classifier" ;;
  eval-classifier)  # clean-image classifier for evaluation only
    exec "${launch[@]}" training/train_classifier.py "${common[@]}" --noise_free --model_config small --pooling mean \
      --max_train_steps 2000 --learning_rate 1e-3 --lr_warmup_steps 100 --adam_weight_decay 0.05 --ema_max_decay 0.999 \
      --eval_max_samples 10000 --output_dir "$runs/$name-eval-classifier" ;;
  text)  # Imagen-style text-to-image on captioned 1x28x56 pixels, frozen MiniLM: the latent-text recipe with the pixel
         # preset (cross-attention at 7x14 only; at 14x28 too, a step costs 3x on a CPU), for dynamic thresholding
    exec "${launch[@]}" training/train_text_to_image.py "${common[@]}" --model_config pixel --caption_dropout 0.1 \
      --pair_fraction 0.5 --max_train_steps 8000 --learning_rate 1e-3 --lr_warmup_steps 500 --snr_gamma 5 \
      --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name-text" ;;
  vae)  # the autoencoder of latent diffusion: 1x32x32 <-> 4x8x8
    exec "${launch[@]}" training/train_vae.py "${common[@]}" --resolution 32 --vae_config small --kl_weight 1e-4 \
      --max_train_steps 3000 --learning_rate 1e-3 --lr_warmup_steps 100 --ema_max_decay 0.999 \
      --output_dir "$runs/$name-vae" ;;
  latent-unet)  # the class-conditional UNet of the unet recipe, on the vae recipe's latents
    exec "${launch[@]}" training/train_unet.py "${common[@]}" --resolution 32 --vae "$runs/$name-vae" --class_conditional \
      --label_dropout 0.2 --model_config small --max_train_steps 10000 --learning_rate 1e-3 --lr_warmup_steps 500 \
      --snr_gamma 5 --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name-latent" ;;
  latent-classifier)  # the noise-aware classifier recipe on the vae recipe's scaled latents (same schedule as the
                      # latent UNet's, so it can train beside it)
    exec "${launch[@]}" training/train_classifier.py "${common[@]}" --resolution 32 --vae "$runs/$name-vae" \
      --ddpm_num_steps 1000 --ddpm_beta_schedule linear --model_config small --pooling attention --max_train_steps 6000 \
      --learning_rate 5e-4 --lr_warmup_steps 200 --adam_weight_decay 0.05 --ema_max_decay 0.999 \
      --output_dir "$runs/$name-latent-classifier" ;;
  latent-text)  # the text recipe on the vae recipe's latents: 20x cheaper per step on a CPU (see README), with the
                # compact preset (one block per level) and 8,000 steps to fit one session of one CPU core
    exec "${launch[@]}" training/train_text_to_image.py "${common[@]}" --vae "$runs/$name-vae" --model_config compact \
      --caption_dropout 0.1 --pair_fraction 0.5 --max_train_steps 8000 --learning_rate 1e-3 --lr_warmup_steps 500 \
      --snr_gamma 5 --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name-latent-text" ;;
  clip-latent|clip-items|clip-clean)  # GLIDE's noise-aware CLIP (small preset, 0.14M parameters, batch 128 for the
        # contrastive loss): on the shipped text model's latents and schedule (clip-latent), on the class model's 28x28
        # one-item images and schedule (clip-items), or on clean 28x56 pixels with another seed (clip-clean: grades, never guides)
    clip=(training/train_clip.py "${common[@]}" --train_batch_size 128 --model_config small --learning_rate 1e-3
          --lr_warmup_steps 200 --adam_weight_decay 0.05 --ema_max_decay 0.999 --output_dir "$runs/$name-$model")
    case "$model" in
      clip-latent) exec "${launch[@]}" "${clip[@]}" --vae "checkpoints/$name-text/vae" --noise_scheduler "checkpoints/$name-text" \
                     --max_train_steps 8000 ;;
      clip-items) exec "${launch[@]}" "${clip[@]}" --images items --noise_scheduler "checkpoints/$name" --max_train_steps 6000 ;;
      clip-clean) exec "${launch[@]}" "${clip[@]}" --noise_free --seed 1 --max_train_steps 4000 ;;
    esac ;;
  low-resolution-unet)  # a cascade's base (Ho et al. 2021): the unet recipe at 14x14 on area-downsampled images,
                        # shallow preset (two levels, 0.94M parameters)
    exec "${launch[@]}" training/train_unet.py "${common[@]}" --resolution 14 --resize_filter area --class_conditional \
      --label_dropout 0.2 --model_config shallow --max_train_steps 5000 --learning_rate 1e-3 --lr_warmup_steps 500 \
      --snr_gamma 5 --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name-14" ;;
  low-resolution-text)  # a cascade's text base: the text recipe on one captioned item alone at 14x14 (area-downsampled,
                        # as the class base's data), the shallow text preset (the class base's, attending at 7x7)
    exec "${launch[@]}" training/train_text_to_image.py "${common[@]}" --canvas item --pair_fraction 0 --resolution 14 \
      --resize_filter area --model_config shallow --caption_dropout 0.1 --max_train_steps 5000 --learning_rate 1e-3 \
      --lr_warmup_steps 500 --snr_gamma 5 --ema_max_decay 0.9995 --save_images_steps 1000 --output_dir "$runs/$name-text-14" ;;
  super-resolution)  # a cascade's 14 -> 28 stage with noise-conditioning augmentation, a ~ U[0, 1] (Imagen), narrow preset;
                     # 2,500 steps: its samples were sharp by step 2,000 (session 17), and it and its ablation fit one
                     # session's CPU time beside the base
    exec "${launch[@]}" training/train_super_resolution.py "${common[@]}" --low_resolution 14 --max_augmentation_level 1 \
      --model_config narrow --max_train_steps 2500 --learning_rate 1e-3 --lr_warmup_steps 250 --snr_gamma 5 \
      --ema_max_decay 0.999 --save_images_steps 500 --output_dir "$runs/$name-super-resolution" ;;
  super-resolution-no-augmentation)  # the ablation: the super-resolution recipe without augmentation (a = 0)
    exec "${launch[@]}" training/train_super_resolution.py "${common[@]}" --low_resolution 14 --max_augmentation_level 0 \
      --model_config narrow --max_train_steps 2500 --learning_rate 1e-3 --lr_warmup_steps 250 --snr_gamma 5 \
      --ema_max_decay 0.999 --save_images_steps 500 --output_dir "$runs/$name-super-resolution-no-augmentation" ;;
  super-resolution-class-conditional)  # the super-resolution recipe also told the class (label dropout 0.1), so that
                                      # CFG applies to the stage: a UNet2DConditionModel, the level through timestep_cond
    exec "${launch[@]}" training/train_super_resolution.py "${common[@]}" --low_resolution 14 --max_augmentation_level 1 \
      --class_conditional --label_dropout 0.1 --model_config narrow --max_train_steps 2500 --learning_rate 1e-3 \
      --lr_warmup_steps 250 --snr_gamma 5 --ema_max_decay 0.999 --save_images_steps 500 \
      --output_dir "$runs/$name-super-resolution-class-conditional" ;;
  *) echo "model must be unet, weak-unet, classifier, guide-classifier, eval-classifier, text, vae, latent-unet, latent-classifier," \
       "latent-text, clip-latent, clip-items, clip-clean, low-resolution-unet, low-resolution-text, super-resolution, super-resolution-no-augmentation or" \
       "super-resolution-class-conditional;" \
       "got $model" >&2; exit 2 ;;
esac
