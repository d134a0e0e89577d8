"""Captioned images built from a labelled dataset (MNIST, Fashion-MNIST) where the text matters: varied natural
captions per class (synonyms and paraphrases) and two-item compositions whose order the model must read
("a 4 to the left of a 9" is not "a 9 to the left of a 4"). Held-out caption templates test generalisation.

Every image is 28 x 56: one item centred, or two items side by side, each at its original 28 x 28, so that the
evaluation classifier reads each half unchanged. Item i of a `CaptionedPairs` is a pure function of (seed, i).
"""

from dataclasses import dataclass

import numpy as np

# words for each class, in label order; the first is the canonical one used in evaluation prompts
CLASS_WORDS = {
    "mnist": [
        ["zero", "0", "nought"], ["one", "1"], ["two", "2"], ["three", "3"], ["four", "4"],
        ["five", "5"], ["six", "6"], ["seven", "7"], ["eight", "8"], ["nine", "9"],
    ],
    "fashion_mnist": [
        ["t-shirt", "top", "tee"], ["pair of trousers", "pair of pants", "pair of jeans"],
        ["pullover", "sweater", "jumper"], ["dress", "gown"], ["coat", "jacket"], ["sandal", "summer sandal"],
        ["shirt", "button-up shirt"], ["sneaker", "trainer", "running shoe"], ["bag", "handbag", "purse"],
        ["ankle boot", "leather boot", "boot"],
    ],
}  # fmt: skip

# {a}: the word with its article ("a seven", "an 8"); {w}: the bare word
SINGLE_TEMPLATES = {
    "mnist": {
        "train": ["a handwritten {w}", "the number {w}", "the digit {w}", "{a}", "a drawing of the number {w}",
                  "{w}, written by hand"],
        "held_out": ["a picture of the numeral {w}", "an image showing the digit {w}", "someone wrote {a}"],
    },
    "fashion_mnist": {
        "train": ["{a}", "a photo of {a}", "{a} on a black background", "a picture of {a}", "a grayscale {w}"],
        "held_out": ["a product shot of {a}", "an image showing {a}", "a small photo of {a}"],
    },
}  # fmt: skip
# Training pair wordings are many and varied on purpose: with three, the model read left and right from the
# training sentences (100%) but not from unseen ones (37.8%); paraphrases teach the relation, not the sentence. The
# held-out wordings are none of these (tested), though their phrases ("on the left", "left to right") occur.
PAIR_TEMPLATES = {
    "train": ["{a_left} to the left of {a_right}", "{a_right} to the right of {a_left}",
              "{a_left} and {a_right} side by side, the {w_left} on the left",
              "{a_left} on the left side and {a_right} on the right side", "{a_right} with {a_left} on its left",
              "{a_left} with {a_right} on its right", "{a_left} followed by {a_right}", "left: {a_left}, right: {a_right}",
              "the {w_left} is left of the {w_right}", "the {w_right} is right of the {w_left}",
              "{a_left} beside {a_right}, the {w_right} on the right", "from left to right, {a_left} and {a_right}",
              "{a_left} first, then {a_right}", "the left item is {a_left}, the right item is {a_right}"],
    "held_out": ["on the left {a_left}, on the right {a_right}", "{a_left} next to {a_right}, left to right"],
}  # fmt: skip
SPLITS = ("train", "held_out")
# "pair": a 28 x 56 canvas with one item (centred) or two side by side; "item": one item alone, at its own size
CANVASES = ("pair", "item")
NO_ITEM = -1  # the right-hand class of a one-item image


def with_article(word: str) -> str:
    """'a seven', 'an eight', 'an 8', 'an ankle boot', 'a one'."""
    first = word.split()[0]
    vowel_sound = (first[0] in "aeio" and first != "one") or first in ("8", "11", "18")  # "a one", "an 8"
    return f"{'an' if vowel_sound else 'a'} {word}"


def single_caption(template: str, word: str) -> str:
    return template.format(a=with_article(word), w=word)


def pair_caption(template: str, left: str, right: str) -> str:
    return template.format(a_left=with_article(left), a_right=with_article(right), w_left=left, w_right=right)


def all_captions(dataset: str, split: str = "train") -> list[str]:
    """Every caption the generator can produce for one template split, sorted: the vocabulary to cache."""
    words = CLASS_WORDS[dataset]
    captions = {single_caption(t, w) for t in SINGLE_TEMPLATES[dataset][split] for ws in words for w in ws}
    for template in PAIR_TEMPLATES[split]:
        for left_words in words:
            for right_words in words:
                captions.update(pair_caption(template, left, right) for left in left_words for right in right_words)
    return sorted(captions)


@dataclass
class CaptionedItem:
    image: np.ndarray  # uint8 (1, 28, 56)
    caption: str
    left: int  # class of the left item, or of the single item
    right: int  # class of the right item, or NO_ITEM


class CaptionedPairs:
    """A virtual dataset of `length` captioned 28 x 56 images composed from `images` (N, 1, 28, 28) uint8 with
    `labels`: a share `pair_fraction` of two-item images, the rest one item; captions from the `split` templates.
    `canvas="item"`: each image is one item alone at its own size (N, 1, s, s), e.g. a cascade's 14 x 14 base data;
    it draws no pairs (`pair_fraction` 0)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, dataset: str, split: str = "train",
                 pair_fraction: float = 0.5, length: int | None = None, seed: int = 0, border: int = 0,
                 canvas: str = "pair"):  # fmt: skip
        if dataset not in CLASS_WORDS:
            raise ValueError(f"`dataset` must be one of {', '.join(CLASS_WORDS)} for captions; got {dataset!r}.")
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}.")
        if not 0 <= pair_fraction <= 1:
            raise ValueError(f"`pair_fraction` must lie in [0, 1]; got {pair_fraction}.")
        if canvas not in CANVASES:
            raise ValueError(f"`canvas` must be one of {CANVASES}; got {canvas!r}.")
        if canvas == "item" and (pair_fraction != 0 or border):
            raise ValueError(f"`canvas='item'` holds one item: `pair_fraction` must be 0 and `border` 0; got "
                             f"{pair_fraction} and {border}.")  # fmt: skip
        item_shape = (1, 28, 28) if canvas == "pair" else (1, images.shape[-1], images.shape[-1])
        if images.ndim != 4 or images.shape[1:] != item_shape:
            raise ValueError(f"`images` must be (N, {', '.join(map(str, item_shape))}) uint8; got {images.shape}.")
        self.images, self.labels = images, np.asarray(labels)
        self.words, self.split = CLASS_WORDS[dataset], split
        self.single_templates, self.pair_templates = SINGLE_TEMPLATES[dataset][split], PAIR_TEMPLATES[split]
        self.pair_fraction, self.length, self.seed = pair_fraction, length or 2 * len(images), seed
        self.border = border  # black pixels around the 28 x 56 canvas (2 and 4 make 32 x 64, for a VAE's factor 4)
        self.canvas = canvas

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> CaptionedItem:
        rng = np.random.default_rng([self.seed, index])
        first = rng.integers(len(self.images))
        if self.canvas == "item":
            template = self.single_templates[rng.integers(len(self.single_templates))]
            label = int(self.labels[first])
            return CaptionedItem(self.images[first].copy(), single_caption(template, self._word(label, rng)), label, NO_ITEM)
        canvas = np.zeros((1, 28, 56), dtype=np.uint8)
        if rng.random() < self.pair_fraction:
            second = rng.integers(len(self.images))
            left, right = int(self.labels[first]), int(self.labels[second])
            canvas[:, :, :28], canvas[:, :, 28:] = self.images[first], self.images[second]
            template = self.pair_templates[rng.integers(len(self.pair_templates))]
            caption = pair_caption(template, self._word(left, rng), self._word(right, rng))
            return CaptionedItem(canvas, caption, left, right)
        left = int(self.labels[first])
        canvas[:, :, 14:42] = self.images[first]
        template = self.single_templates[rng.integers(len(self.single_templates))]
        return CaptionedItem(canvas, single_caption(template, self._word(left, rng)), left, NO_ITEM)

    def _word(self, label: int, rng) -> str:
        words = self.words[label]
        return words[rng.integers(len(words))]

    def captions(self) -> list[str]:
        """Every caption the items of this (finite, seeded) dataset carry, sorted: what training can look up."""
        return sorted({self[index].caption for index in range(len(self))})

    def batch(self, indices) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(images (B, 1, 28 + 2 border, 56 + 4 border) uint8, or (B, 1, s, s) for the item canvas, captions, classes
        (B, 2) with NO_ITEM for one-item images)."""
        items = [self[int(i)] for i in indices]
        images = np.stack([item.image for item in items])
        if self.border:
            images = np.pad(images, ((0, 0), (0, 0), (self.border, self.border), (2 * self.border, 2 * self.border)))
        return images, [item.caption for item in items], np.array([[item.left, item.right] for item in items])


def evaluation_prompts(dataset: str, split: str = "held_out") -> list[tuple[str, int, int]]:
    """(prompt, left class, right class or NO_ITEM): every class once per single template, and every ordered pair
    of distinct classes once, with the canonical words, for measuring prompt alignment."""
    return [(prompt, left, right) for prompt, left, right, _ in templated_evaluation_prompts(dataset, split)]


def evaluation_templates(dataset: str, split: str = "held_out") -> list[str]:
    """The template each of evaluation_prompts(dataset, split) was made from, in the same order."""
    return [template for *_, template in templated_evaluation_prompts(dataset, split)]


def templated_evaluation_prompts(dataset: str, split: str) -> list[tuple[str, int, int, str]]:
    """(prompt, left, right, template); the pair templates take turns over the ordered pairs."""
    words = [ws[0] for ws in CLASS_WORDS[dataset]]
    prompts = [(single_caption(t, w), c, NO_ITEM, t) for t in SINGLE_TEMPLATES[dataset][split] for c, w in enumerate(words)]
    templates = PAIR_TEMPLATES[split]
    pairs = [(a, b) for a in range(len(words)) for b in range(len(words)) if a != b]
    for i, (a, b) in enumerate(pairs):
        template = templates[i % len(templates)]
        prompts.append((pair_caption(template, words[a], words[b]), a, b, template))
    return prompts


def content_ids(classes):
    """One integer per depicted content, from classes (B, 2) (left, right or NO_ITEM): a one-item image's class, or
    the ordered pair (left, right); NO_ITEM is -1, so right + 1 counts 0 (none) to 10."""
    return classes[:, 0] * 11 + classes[:, 1] + 1


def retrieval_candidates(dataset: str, split: str = "held_out", pairs: bool = True) -> list[tuple[str, int, int]]:
    """(caption, left, right or NO_ITEM): every content (each class alone and, with `pairs`, every ordered pair,
    equal classes included) in every template of `split`, with the canonical words: the captions an image-text
    model ranks for retrieval."""
    words = [ws[0] for ws in CLASS_WORDS[dataset]]
    candidates = [(single_caption(t, w), c, NO_ITEM) for t in SINGLE_TEMPLATES[dataset][split] for c, w in enumerate(words)]
    if pairs:
        candidates += [(pair_caption(t, words[a], words[b]), a, b) for t in PAIR_TEMPLATES[split]
                       for a in range(len(words)) for b in range(len(words))]  # fmt: skip
    return candidates
