"""Captioned compositions: what each caption says matches what each image shows, deterministically."""

import re

import numpy as np
import pytest

from guided_diffusers.training.captions import (
    CLASS_WORDS,
    NO_ITEM,
    PAIR_TEMPLATES,
    SINGLE_TEMPLATES,
    SPLITS,
    CaptionedPairs,
    all_captions,
    evaluation_prompts,
    evaluation_templates,
    pair_caption,
    single_caption,
    with_article,
)
from guided_diffusers.training.data import load_image_dataset, to_tensors


@pytest.fixture(scope="module")
def mnist():
    data = to_tensors(load_image_dataset("mnist", split="test", max_samples=200), 28, 1)
    return data.images.numpy(), data.labels.numpy()


def words_in(caption, dataset):
    """The classes whose words appear in the caption, in order of appearance; a word inside a longer one that
    matched ("boot" in "ankle boot") does not count again."""
    spans = []
    for label, words in enumerate(CLASS_WORDS[dataset]):
        for word in words:
            spans += [(m.start(), m.end(), label) for m in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", caption)]
    spans.sort(key=lambda span: (span[0], -span[1]))
    found, end = [], -1
    for start, stop, label in spans:
        if start >= end:
            found.append(label)
            end = stop
    return found


def test_images_show_what_the_captions_say(mnist):
    images, labels = mnist
    data = CaptionedPairs(images, labels, "mnist", pair_fraction=0.5, seed=3)
    kinds = set()
    for index in range(300):
        item = data[index]
        assert item.image.shape == (1, 28, 56) and item.image.dtype == np.uint8
        if item.right == NO_ITEM:
            kinds.add("single")
            assert item.image[:, :, :14].max() == 0 and item.image[:, :, 42:].max() == 0  # centred
            assert set(words_in(item.caption, "mnist")) == {item.left}
            continue
        kinds.add("pair")
        halves = item.image[:, :, :28], item.image[:, :, 28:]
        for half, label in zip(halves, (item.left, item.right)):  # each half is a real image of its class
            assert any(np.array_equal(half, image) for image in images[labels == label])
        # the caption is one of the training wordings of (left class, right class), and names them in its order
        wordings = [(template, pair_caption(template, left, right)) for template in PAIR_TEMPLATES["train"]
                    for left in CLASS_WORDS["mnist"][item.left] for right in CLASS_WORDS["mnist"][item.right]]  # fmt: skip
        template = next(template for template, caption in wordings if caption == item.caption)
        right_first = template.index("_right}") < template.index("_left}")
        expected = [item.right, item.left] if right_first else [item.left, item.right]
        assert words_in(item.caption, "mnist")[:2] == expected
    assert kinds == {"single", "pair"}


def test_items_are_a_pure_function_of_seed_and_index(mnist):
    images, labels = mnist
    a, b = CaptionedPairs(images, labels, "mnist", seed=1), CaptionedPairs(images, labels, "mnist", seed=1)
    c = CaptionedPairs(images, labels, "mnist", seed=2)
    assert all(a[i].caption == b[i].caption and np.array_equal(a[i].image, b[i].image) for i in range(20))
    assert [a[i].caption for i in range(20)] != [c[i].caption for i in range(20)]
    batch_images, captions, classes = a.batch([5, 0, 5])
    assert batch_images.shape == (3, 1, 28, 56) and captions[0] == captions[2] == a[5].caption
    assert classes.shape == (3, 2)


def test_held_out_templates_never_appear_in_training_captions():
    for dataset in CLASS_WORDS:
        train, held_out = set(all_captions(dataset, "train")), set(all_captions(dataset, "held_out"))
        assert not train & held_out
        assert not set(SINGLE_TEMPLATES[dataset]["train"]) & set(SINGLE_TEMPLATES[dataset]["held_out"])
    assert not set(PAIR_TEMPLATES["train"]) & set(PAIR_TEMPLATES["held_out"])


def test_every_generated_caption_is_in_the_cached_vocabulary(mnist):
    images, labels = mnist
    vocabulary = set(all_captions("mnist", "held_out"))
    data = CaptionedPairs(images, labels, "mnist", split="held_out", seed=0)
    assert all(data[i].caption in vocabulary for i in range(200))


def test_a_dataset_lists_exactly_the_captions_its_items_carry(mnist):
    images, labels = mnist
    data = CaptionedPairs(images, labels, "mnist", seed=0, length=150)
    captions = data.captions()
    assert captions == sorted({data[i].caption for i in range(150)}) and len(captions) <= 150
    assert set(captions) <= set(all_captions("mnist", "train"))


def test_evaluation_prompts_cover_every_class_and_ordered_pair():
    prompts = evaluation_prompts("fashion_mnist")
    singles = {left for _, left, right in prompts if right == NO_ITEM}
    pairs = {(left, right) for _, left, right in prompts if right != NO_ITEM}
    assert singles == set(range(10)) and len(pairs) == 90 and all(a != b for a, b in pairs)
    for prompt, left, right in prompts:
        mentioned = words_in(prompt, "fashion_mnist")
        assert mentioned[:2] == ([left] if right == NO_ITEM else [left, right])


@pytest.mark.parametrize("split", SPLITS)
def test_each_evaluation_prompt_is_its_templates_wording(split):
    prompts, templates = evaluation_prompts("mnist", split), evaluation_templates("mnist", split)
    assert len(templates) == len(prompts)
    assert set(templates) == set(SINGLE_TEMPLATES["mnist"][split]) | set(PAIR_TEMPLATES[split])
    words = [ws[0] for ws in CLASS_WORDS["mnist"]]
    for (prompt, left, right), template in zip(prompts, templates):
        expected = single_caption(template, words[left]) if right == NO_ITEM else pair_caption(template, words[left], words[right])
        assert prompt == expected


def test_articles():
    assert [with_article(w) for w in ("seven", "eight", "8", "one", "ankle boot", "bag", "11")] == \
        ["a seven", "an eight", "an 8", "a one", "an ankle boot", "a bag", "an 11"]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [({"dataset": "cifar10"}, "dataset"), ({"split": "test"}, "split"), ({"pair_fraction": 1.5}, "pair_fraction")],
)
def test_bad_arguments(mnist, kwargs, message):
    images, labels = mnist
    with pytest.raises(ValueError, match=message):
        CaptionedPairs(images, labels, **{"dataset": "mnist", **kwargs})


def test_the_item_canvas_is_one_captioned_item_alone_at_its_own_size(mnist):
    """A cascade's text base data: each image one (here 14x14) item, captioned with its class, never a pair."""
    images, labels = mnist
    small = images[:, :, ::2, ::2].copy()  # any 14x14 items
    data = CaptionedPairs(small, labels, "mnist", pair_fraction=0, seed=0, canvas="item")
    batch, captions, classes = data.batch(range(40))
    assert batch.shape == (40, 1, 14, 14) and (classes[:, 1] == NO_ITEM).all()
    for image, caption, (left, _) in zip(batch, captions, classes):
        assert any((image == item).all() and label == left for item, label in zip(small, labels))
        assert words_in(caption, "mnist") == [left]


@pytest.mark.parametrize("kwargs, message", [({"pair_fraction": 0.5}, "holds one item"), ({"border": 2}, "holds one item"),
                                             ({"canvas": "grid"}, "`canvas` must be one of")])  # fmt: skip
def test_bad_item_canvas_arguments(mnist, kwargs, message):
    images, labels = mnist
    with pytest.raises(ValueError, match=message):
        CaptionedPairs(images, labels, "mnist", **{"pair_fraction": 0, "canvas": "item", **kwargs})


def test_the_pair_canvas_needs_28x28_items(mnist):
    images, labels = mnist
    with pytest.raises(ValueError, match="\\(N, 1, 28, 28\\)"):
        CaptionedPairs(images[:, :, ::2, ::2].copy(), labels, "mnist")
