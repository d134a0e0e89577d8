"""Train a noise-aware contrastive image-text model (GLIDE's noise-aware CLIP) with accelerate, on the captioned
compositions of MNIST or Fashion-MNIST that the text-to-image model learns from (training/captions.py).

    # guides the latent text-to-image model: reads its 4x8x16 latents at every timestep of its schedule
    accelerate launch training/train_clip.py --dataset_name mnist --noise_scheduler checkpoints/mnist-text \
        --vae checkpoints/mnist-text/vae --output_dir runs/mnist-clip-latent
    # guides a class model's unconditional mode: 28x28 one-item images and their captions
    accelerate launch training/train_clip.py --dataset_name mnist --images items --noise_scheduler checkpoints/mnist \
        --output_dir runs/mnist-clip-items
    # grades samples (CLIP score): clean 28x56 images only, other weights than any guiding model
    accelerate launch training/train_clip.py --dataset_name mnist --noise_free --output_dir runs/mnist-clip-clean

x_t = q_sample(x0, t) with t uniform over the schedule's timesteps (t = 0 with --noise_free); the symmetric
contrastive loss over the batch, captions of the same content counted as matches. The frozen encoder runs once over
every caption before training. Reports held-out retrieval accuracy per timestep bucket (held-out images, held-out
caption wordings) and saves the model (safetensors) with a model card.
"""

import json
from pathlib import Path

import torch

from guided_diffusers.models import NoiseAwareCLIP, contrastive_loss, schedule_of
from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER, hidden_size, load_text_encoder
from guided_diffusers.training import args as flags
from guided_diffusers.training.caption_states import caption_cache
from guided_diffusers.training.captions import NO_ITEM, CaptionedPairs, content_ids, retrieval_candidates
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.data import to_model_range
from guided_diffusers.training.latents import encode_compositions, load_vae
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import training_section
from guided_diffusers.training.model_configs import clip_config
from guided_diffusers.training.runtime import (
    finish_output,
    load_noise_scheduler,
    load_training_data,
    make_accelerator,
    prepare_training,
    swapped_in_ema,
)

IMAGES = ("compositions", "items")
CLIP = [
    ("--model_config", dict(default="small", help="a CLIP preset (tiny, small) or a JSON config file")),
    ("--images", dict(default="compositions", choices=IMAGES,
                      help="compositions: 28x56, one item or two side by side (the text-to-image data); items: "
                           "28x28 one-item images (a class model's images)")),
    ("--pair_fraction", dict(type=float, default=0.5, help="share of two-item compositions")),
    ("--text_encoder", dict(default=DEFAULT_TEXT_ENCODER, help="a transformers encoder: Hub id or folder")),
    ("--max_length", dict(type=int, default=24, help="prompt tokens (longer prompts are cut, with a warning)")),
    ("--noise_free", dict(action="store_true", help="train on clean images only (t = 0): a model that grades "
                                                    "samples (CLIP score), never one that guided them")),
    ("--eval_split", dict(default="test", help="held-out split for the retrieval accuracy")),
    ("--eval_max_samples", dict(type=int, default=2000)),
    ("--num_timestep_buckets", dict(type=int, default=10)),
]  # fmt: skip


def parse_args(argv=None):
    parser = flags.build_parser(__doc__.split("\n")[0], flags.DATA, flags.OPTIMISATION, flags.RUN, CLIP,
                                flags.NOISE_SCHEDULE, flags.LATENT)  # fmt: skip
    parser.set_defaults(learning_rate=1e-3, train_batch_size=128)
    args = parser.parse_args(argv)
    flags.check_common(args)
    if args.images == "items" and args.vae is not None:
        raise ValueError("--images items is for pixel-space class models; a latent model reads compositions "
                         "(--images compositions) encoded by --vae.")  # fmt: skip
    flags.check_captioned(args)
    if not 0 <= args.pair_fraction <= 1:
        raise ValueError(f"--pair_fraction must lie in [0, 1]; got {args.pair_fraction}.")
    if args.num_timestep_buckets < 1 or args.eval_max_samples < 1:
        raise ValueError("--num_timestep_buckets and --eval_max_samples must be positive integers.")
    if args.random_flip:
        raise ValueError("--random_flip would swap left and right, which the captions name: it is refused.")
    args.input_shape = (28, 28) if args.images == "items" else args.diffused_shape
    clip_config(args.model_config, *args.input_shape, args.diffused_channels, 8)  # a bad preset fails now
    args.noise = load_noise_scheduler(args)
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_clip.py", argv)
    return args


class CaptionedImages:
    """What the model sees of a `CaptionedPairs`: (x0 (B, C, H, W) in [-1, 1] or scaled latents, captions, classes
    (B, 2): left and right, or the item and NO_ITEM). `items`: the centre 28 x 28 of one-item compositions; `latents`: a LatentCache of every composition,
    drawn from q(z | x) for training (`generator`) or its mean for evaluation."""

    def __init__(self, captioned: CaptionedPairs, items: bool, latents=None):
        self.captioned, self.items, self.latents = captioned, items, latents

    def __len__(self) -> int:
        return len(self.captioned)

    def batch(self, indices, generator=None):
        images, captions, classes = self.captioned.batch(indices)
        if self.latents is None:
            x0 = to_model_range(torch.from_numpy(images))
            x0 = x0[..., 14:42] if self.items else x0
        elif generator is None:
            x0 = self.latents.mean[indices] * self.latents.scaling_factor
        else:
            x0 = self.latents.sample(indices, generator)
        return x0, captions, torch.from_numpy(classes)


def make_loss(noise_scheduler, data: CaptionedImages, cache, noise_free: bool, device):
    """compute_loss(model, indices, generator): x_t = q_sample(x0, t) (x0 itself when `noise_free`), the
    contrastive loss between the batch's x_t and its captions' token states."""
    rows, states, masks = cache

    def compute_loss(model, indices, generator):
        x0, captions, classes = data.batch(indices.tolist(), generator)
        caption_rows = torch.tensor([rows[caption] for caption in captions])
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        if noise_free:
            timesteps.zero_()
            noise.zero_()
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)
        logits = model(x_t.to(device), timesteps.to(device), states[caption_rows].to(device),
                       masks[caption_rows].to(device)).logits_per_image  # fmt: skip
        return contrastive_loss(logits, content_ids(classes).to(device))

    return compute_loss


@torch.no_grad()
def retrieval_by_timestep(model, noise_scheduler, held_out: CaptionedImages, candidates, cache, buckets: int,
                          device, noise_free: bool = False, batch_size: int = 500):  # fmt: skip
    """Top-1 retrieval on held-out images: the share whose most similar caption among `candidates` ((caption,
    left, right): every content in every held-out wording) describes the image's content; overall, on one-item and
    on two-item images, with t uniform inside each of `buckets` equal ranges of timesteps (t = 0 when
    `noise_free`)."""
    rows_of, states, masks = cache
    candidate_rows = torch.tensor([rows_of[caption] for caption, _, _ in candidates])
    text = model.text_embeds(states[candidate_rows].to(device), masks[candidate_rows].to(device))
    candidate_content = content_ids(torch.tensor([(a, b) for _, a, b in candidates]))
    T = noise_scheduler.config.num_train_timesteps
    generator = torch.Generator().manual_seed(1234)
    rows = []
    for bucket in range(1 if noise_free else buckets):
        low, high = (0, 1) if noise_free else (bucket * T // buckets, (bucket + 1) * T // buckets)
        hits, pairs = [], []
        for start in range(0, len(held_out), batch_size):
            x0, _, classes = held_out.batch(list(range(start, min(start + batch_size, len(held_out)))))
            t = torch.randint(low, high, (len(x0),), generator=generator)
            x_t = noise_scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
            best = (model.image_embeds(x_t.to(device), t.to(device)) @ text.T).argmax(1).cpu()
            hits.append(candidate_content[best] == content_ids(classes))
            pairs.append(classes[:, 1] != NO_ITEM)
        hit, pair = torch.cat(hits).float(), torch.cat(pairs)
        rows.append({"timesteps": [low, high - 1 if noise_free else high], "accuracy": hit.mean().item(),
                     "one_item": hit[~pair].mean().item() if (~pair).any() else None,
                     "two_items": hit[pair].mean().item() if pair.any() else None})  # fmt: skip
    return rows


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    _, data = load_training_data(args)
    _, held_out_data = load_training_data(args, split=args.eval_split, max_samples=args.eval_max_samples)
    if data.labels is None:
        raise ValueError("Captions are built from class labels: the dataset needs a label column.")
    pair_fraction = 0.0 if args.images == "items" else args.pair_fraction
    captioned = CaptionedPairs(data.images.numpy(), data.labels.numpy(), args.dataset_name, "train", pair_fraction,
                               length=2 * len(data), seed=args.seed, border=args.border)  # fmt: skip
    held_out_captioned = CaptionedPairs(held_out_data.images.numpy(), held_out_data.labels.numpy(), args.dataset_name,
                                        "held_out", pair_fraction, length=args.eval_max_samples, seed=args.seed + 1,
                                        border=args.border)  # fmt: skip
    vae = None if args.vae is None else load_vae(args.vae)
    items = args.images == "items"
    train_images = CaptionedImages(captioned, items, None if vae is None else encode_compositions(vae, captioned))
    held_out = CaptionedImages(held_out_captioned, items,
                               None if vae is None else encode_compositions(vae, held_out_captioned))  # fmt: skip
    candidates = retrieval_candidates(args.dataset_name, "held_out", pairs=pair_fraction > 0)
    tokenizer, text_encoder = load_text_encoder(args.text_encoder)
    cache = caption_cache(tokenizer, text_encoder, sorted({*captioned.captions(), *(c for c, _, _ in candidates)}),
                          args.max_length, accelerator.device)  # fmt: skip
    noise_scheduler = args.noise
    torch.manual_seed(args.seed)  # the initial weights
    model = NoiseAwareCLIP(**clip_config(
        args.model_config, *args.input_shape, args.diffused_channels, hidden_size(text_encoder),
        noise_schedule=schedule_of(noise_scheduler.config), noise_free=args.noise_free,
        text_encoder_id=args.text_encoder, max_length=args.max_length))  # fmt: skip
    model, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, model, len(captioned), "train_clip")
    compute_loss = make_loss(noise_scheduler, train_images, cache, args.noise_free, accelerator.device)
    state = train(accelerator, model, optimizer, lr_scheduler, ema, compute_loss, len(captioned), args, state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        clip = accelerator.unwrap_model(model).eval()
        with swapped_in_ema(ema, clip):
            rows = retrieval_by_timestep(clip, noise_scheduler, held_out, candidates, cache, args.num_timestep_buckets,
                                         accelerator.device, args.noise_free)  # fmt: skip
            clip.save_pretrained(args.output_dir)
        save_report(args, rows, state, len(captioned), len(held_out), len(candidates), clip)
    accelerator.end_training()


def retrieval_table(rows) -> str:
    def span(row):
        low, high = row["timesteps"]
        return "clean (t = 0)" if low == high == 0 else f"[{low}, {high})"

    def share(value):
        return "-" if value is None else f"{value:.1%}"

    return "| timesteps | all | one item | two items |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {span(r)} | {share(r['accuracy'])} | {share(r['one_item'])} | {share(r['two_items'])} |" for r in rows
    )


def save_report(args, rows, state, num_images: int, num_held_out: int, num_candidates: int, clip):
    """Retrieval accuracy per timestep bucket as JSON, printed, and in the model card."""
    Path(args.output_dir, "retrieval_by_timestep.json").write_text(json.dumps(rows, indent=2))
    table = retrieval_table(rows)
    print(table)
    parameters = sum(p.numel() for p in clip.parameters()) / 1e6
    channels, (height, width) = args.diffused_channels, args.input_shape
    space = f"the {channels}x{height}x{width} scaled latents of `{args.vae}`" if args.vae else f"{height}x{width} pixels"
    schedule = clip.config.noise_schedule
    noise = ("clean images only (t = 0): a model that grades samples (CLIP score), never one that guided them"
             if args.noise_free else
             f"x_t at every timestep of the `{schedule['beta_schedule']}` schedule with {schedule['num_train_timesteps']} "
             f"steps: it guides sampling (CLIP guidance)")  # fmt: skip
    sections = {
        "Model": f"A {parameters:.2f}M-parameter `NoiseAwareCLIP` ({args.model_config} preset): an image tower on "
        f"{space} and a text tower on the token states of the frozen `{args.text_encoder}` (max {args.max_length} "
        f"tokens, not copied here), trained with the symmetric contrastive loss on captioned "
        f"{'one-item images' if args.images == 'items' else 'compositions'} of {args.dataset_name}, on {noise}.",
        "Usage": "```python\nfrom guided_diffusers.models import NoiseAwareCLIP\n"
        "clip_model = NoiseAwareCLIP.from_pretrained(\"path/or/repo_id\")\n```",
        "Training": training_section(args, state, num_images),
        "Held-out retrieval": f"On {num_held_out} images of split `{args.eval_split}` with captions in the held-out "
        f"wordings: the share whose most similar of {num_candidates} candidate captions (every content in every "
        f"held-out wording) describes what the image shows"
        + ("." if args.noise_free else ", t uniform in each range.") + f"\n\n{table}",
    }  # fmt: skip
    kind = "clean CLIP" if args.noise_free else "noise-aware CLIP"
    finish_output(args, title=f"guided-diffusers {args.dataset_name} {kind}", sections=sections,
                  tags=["clip", "noise-aware-clip" if not args.noise_free else "clip-score"],
                  pipeline_tag="zero-shot-image-classification", datasets=[args.dataset_name],
                  base_model=args.text_encoder)  # fmt: skip


if __name__ == "__main__":
    main()
