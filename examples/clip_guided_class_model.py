"""An open-vocabulary prompt steering the shipped unconditional MNIST model: CLIP guidance (GLIDE) with the folder's
noise-aware `clip_model/`, no class labels (the null class), judged by the evaluation classifier on held-out
one-item prompts (3 wordings x 10 digits, never seen in training).

    python examples/clip_guided_class_model.py --pipeline checkpoints/mnist --clip_scales 0 10 30 100
"""

import argparse

import torch

from guided_diffusers.guiders import CLIPGuidance
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.training.captions import NO_ITEM, evaluation_prompts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="checkpoints/mnist", help="a class pipeline folder with clip_model/")
    parser.add_argument("--eval_classifier", default="checkpoints/mnist-eval-classifier")
    parser.add_argument("--clip_scales", nargs="+", type=float, default=[0.0, 10.0, 30.0, 100.0])
    parser.add_argument("--num_inference_steps", type=int, default=50)
    args = parser.parse_args(argv)
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    judge = NoiseAwareClassifier.from_pretrained(args.eval_classifier).eval()
    singles = [(text, label) for text, label, right in evaluation_prompts("mnist") if right == NO_ITEM]
    prompts, labels = [text for text, _ in singles], torch.tensor([label for _, label in singles])
    print(f"| clip_scale | judged accuracy ({len(prompts)} held-out prompts) | UNet / CLIP evaluations per image |")
    print("| --- | --- | --- |")
    for scale in args.clip_scales:
        out = pipe(batch_size=len(prompts), prompt=prompts, guider=CLIPGuidance(clip_scale=scale), output_type="pt",
                   num_inference_steps=args.num_inference_steps, generator=torch.Generator().manual_seed(0))  # fmt: skip
        with torch.no_grad():
            predicted = judge(out.images * 2 - 1, torch.zeros(len(prompts), dtype=torch.long)).logits.argmax(1)
        accuracy = (predicted == labels).float().mean().item()
        print(f"| {scale:g} | {accuracy:.1%} | {out.evaluations['unet']} / {out.evaluations.get('clip', 0)} |", flush=True)


if __name__ == "__main__":
    main()
