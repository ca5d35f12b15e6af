"""Training: the loss against a hand computation, config parsing, deterministic batches,
a few steps reducing the loss on a tiny synthetic set, resuming."""

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from lang_seg_ros.train import lseg_loss, class_weights_from_counts, load_train_config
from lang_seg_ros.train.trainer import Trainer, build_lr_lambda

LOGIT_SCALE = 1.0 / 0.07


def test_loss_matches_hand_computation():
    # 1 image, 2 labels, 1x3 pixels; pixel/label embeddings are unit vectors.
    pixels = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # (3 pixels, C=2)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (N=2, C=2)
    logits = LOGIT_SCALE * (pixels @ labels.T)  # (3, 2)
    logits = logits.T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    # pixel 0: logits (s, 0), target 0 -> log(1 + e^-s); pixel 1: (0.6s, 0.8s), target 1
    s = LOGIT_SCALE
    l0 = math.log(1 + math.exp(-s))
    l1 = -(0.8 * s - math.log(math.exp(0.6 * s) + math.exp(0.8 * s)))
    expected = (l0 + l1) / 2  # pixel 2 ignored
    assert lseg_loss(logits, target, ignore_index=255).item() == pytest.approx(expected, rel=1e-5)
    # weighted: sum w_y * l / sum w_y
    w = torch.tensor([1.0, 3.0])
    assert lseg_loss(logits, target, 255, w).item() == pytest.approx((l0 + 3 * l1) / 4, rel=1e-5)


def test_loss_all_ignored_is_zero_with_grad():
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
    loss = lseg_loss(logits, torch.full((1, 2, 2), 7), ignore_index=7)
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError):
        lseg_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, dtype=torch.long))


def test_class_weights():
    counts = np.array([100, 25, 1, 0])
    np.testing.assert_allclose(class_weights_from_counts(counts, "none"), 1.0)
    med = class_weights_from_counts(counts, "median_frequency", max_weight=50)
    np.testing.assert_allclose(med, [0.25, 1.0, 25.0, 1.0])
    np.testing.assert_allclose(class_weights_from_counts(counts, "sqrt_median_frequency"), [0.5, 1.0, 5.0, 1.0])
    with pytest.raises(ValueError):
        class_weights_from_counts(counts, "bogus")


def test_poly_schedule_with_warmup():
    cfg = load_train_config("configs/train/tiny_synthetic.yaml").optim
    cfg.schedule, cfg.warmup_iters, cfg.power = "poly", 2, 0.9
    f = build_lr_lambda(cfg, 12)
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0) and f(7) == pytest.approx(0.5 ** 0.9)
    assert f(12) == pytest.approx(0.0)


def test_fine_tuning_starts_from_an_embedded_model_by_name_or_from_a_file_beside_the_config(tmp_path):
    """`init_checkpoint: default-large` names the package's model (the trainer resolves it); any
    other relative value is a file next to the config, as every path in it."""
    config = tmp_path / "run.yaml"
    for value, expected in [("default-large", "default-large"), ("default", "default"),
                            ("weights/v3.safetensors", str(tmp_path / "weights" / "v3.safetensors"))]:
        config.write_text(f"datasets: [{{type: synthetic}}]\ninit_checkpoint: {value}\n")
        assert load_train_config(str(config)).init_checkpoint == expected


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="optim.bogus"):
        load_train_config({"datasets": [{"type": "synthetic"}], "optim": {"bogus": 1}})
    with pytest.raises(ValueError, match="datasets\\[0\\].colour"):
        load_train_config({"datasets": [{"type": "synthetic", "colour": 1}]})
    with pytest.raises(ValueError, match="optim.optimizer"):
        load_train_config({"datasets": [{"type": "synthetic"}], "optim": {"optimizer": "lbfgs"}})
    with pytest.raises(ValueError, match="datasets"):
        load_train_config({})


def _tiny_cfg(tmp_path, **overrides):
    return load_train_config("configs/train/tiny_synthetic.yaml", out_dir=str(tmp_path / "run"), **overrides)


def test_batches_deterministic_and_holdout(tmp_path):
    cfg = _tiny_cfg(tmp_path, val=None)
    cfg.datasets[0].holdout = ["blue disc"]
    a, b = Trainer(cfg, progress=False), Trainer(cfg, progress=False)
    assert a.sets[0].names == ["background", "red box"]
    assert a.sets[0].text_features.shape[0] == 2
    da, xa, ya, ca = a._make_batch(3, [0])
    db, xb, yb, cb = b._make_batch(3, [0])
    torch.testing.assert_close(xa, xb)
    assert torch.equal(ya, yb) and ca == cb == [cfg.batch_size]
    assert set(torch.unique(ya).tolist()) <= {0, 1, 255}  # the held-out disc is ignored


def test_few_steps_reduce_loss_and_resume(tmp_path):
    torch.manual_seed(0)
    cfg = _tiny_cfg(tmp_path, iterations=12, val_every=0, checkpoint_every=6)
    trainer = Trainer(cfg, progress=False)
    sset = trainer.sets[0]
    # a fixed batch, measured before and after training
    _, x, y, _ = trainer._make_batch(0, [0])

    def batch_loss():
        trainer.model.eval()
        with torch.no_grad():
            return lseg_loss(trainer.model(x, sset.text_features), y, sset.ignore_index).item()

    before = batch_loss()
    best = trainer.fit()
    after = batch_loss()
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.safetensors").is_file()
    assert best["miou"] is not None  # validated at the end on the synthetic val set

    # resuming a finished run restores the iteration and does nothing more
    again = Trainer(_tiny_cfg(tmp_path, iterations=12, val_every=0, checkpoint_every=6), progress=False)
    assert again.iteration == 12 and again.cursors == trainer.cursors
    for p, q in zip(again.model.parameters(), trainer.model.parameters()):
        torch.testing.assert_close(p, q)


def test_validation_is_the_segmenter_path_and_training_resumes(tmp_path):
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.train import evaluate_model

    trainer = Trainer(_tiny_cfg(tmp_path, iterations=1), progress=False)
    trainer.model.train()
    metrics = trainer.validate()
    assert trainer.model.training  # back in training mode, in the config's memory format
    assert all(p.is_contiguous() for p in trainer.model.parameters())
    reference = evaluate_model(Segmenter(copy.deepcopy(trainer.model), device="cpu", working_size=64), trainer.val_set)
    assert metrics["miou"] == reference["miou"] and metrics["pixel_accuracy"] == reference["pixel_accuracy"]


def test_best_checkpoint_loads_with_core(tmp_path):
    from lang_seg_ros.model import load_checkpoint

    from lang_seg_ros.referring.vocabulary import checkpoint_vocabulary

    cfg = _tiny_cfg(tmp_path, iterations=2, val_every=2, checkpoint_every=2)
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    model = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert not model.training
    # the training names go into the file: the referring vocabulary of the model it becomes
    assert checkpoint_vocabulary(tmp_path / "run" / "best.safetensors") == tuple(trainer.sets[0].names)


def test_two_datasets_with_their_own_label_lists(tmp_path):
    cfg = _tiny_cfg(tmp_path, val=None, iterations=6, checkpoint_every=6, datasets=[
        {"type": "synthetic", "args": {"num_images": 4, "seed": 0}, "weight": 1.0},
        {"type": "synthetic", "args": {"num_images": 4, "seed": 5, "names": ["grass", "brick", "ball"]},
         "weight": 1.0, "holdout": ["ball"]},
    ])
    trainer = Trainer(cfg, progress=False)
    assert [s.names for s in trainer.sets] == [["background", "red box", "blue disc"], ["grass", "brick"]]
    assert [s.text_features.shape[0] for s in trainer.sets] == [3, 2]
    cursors = [0, 0]
    used = {trainer._make_batch(it, cursors)[0] for it in range(12)}
    assert used == {0, 1}
    trainer.fit()
    assert sum(trainer.cursors) == 6 * cfg.batch_size


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    def run(out, stop_at=None):
        cfg = load_train_config("configs/train/tiny_synthetic.yaml", out_dir=str(out), iterations=4,
                                val=None, checkpoint_every=2)
        torch.manual_seed(0)
        if stop_at is not None:
            first = Trainer(copy.deepcopy(cfg), progress=False)
            first.cfg.iterations = stop_at  # "interrupt" after stop_at steps, as a kill would
            first.fit()
        trainer = Trainer(cfg, progress=False)
        trainer.fit()
        return trainer

    straight = run(tmp_path / "a")
    resumed = run(tmp_path / "b", stop_at=2)
    assert resumed.iteration == straight.iteration == 4 and resumed.cursors == straight.cursors
    for (k, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=k)


def test_the_trainer_encodes_wordings_as_they_are_and_saves_what_it_trained_on(tmp_path, monkeypatch):
    """Training targets are the frozen encoder's own vectors even when the starting checkpoint can
    ground labels; the saved file carries the run's names, wordings and negatives (model.grounding)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from wordnet_db import write_wordnet

    from lang_seg_ros.model import build_model, load_checkpoint, save_checkpoint
    from lang_seg_ros.model.grounding import grounding_for
    from lang_seg_ros.train.wordings import WordingConfig

    # a WordNet in which a "red cube" is a kind of "box": a model knowing "box" would ground it
    synsets = {"entity": (["entity"], [], 0), "box": (["box"], ["entity"], 0), "cube": (["red_cube"], ["box"], 0)}
    index = {"box": (["box"], 1), "red_cube": (["cube"], 1)}
    monkeypatch.setenv("WNSEARCHDIR", str(write_wordnet(tmp_path / "wn", synsets, index)))
    grounding_for.cache_clear()
    init = build_model("lseg_tiny")
    init.config.text_encoder = replace(init.config.text_encoder, vocabulary=(("box",),))
    init.config.referring = {"split_depth": 0.2}  # chosen for init's weights, not for the run's
    assert not torch.allclose(init.encode_text(["red cube"]), init.text_encoder.encode_labels(["red cube"]))
    save_checkpoint(init, tmp_path / "init.safetensors")

    cfg = _tiny_cfg(tmp_path, iterations=2, val_every=2, checkpoint_every=2,
                    init_checkpoint=str(tmp_path / "init.safetensors"))
    cfg.datasets[0].wordings = WordingConfig(wordings={"red box": ["red cube"]}, negatives=["teapot", "violin"],
                                             negatives_per_step=1, max_similarity=1.01)
    try:
        trainer = Trainer(cfg, progress=False)
        bank = trainer.sets[0].wording_bank
        torch.testing.assert_close(bank.features, trainer.model.text_encoder.encode_labels(bank.prompts))
        trainer.fit()
    finally:
        grounding_for.cache_clear()
    best = load_checkpoint(tmp_path / "run" / "best.safetensors").config
    saved = best.text_encoder
    assert saved.vocabulary == (("background",), ("red box", "red cube"), ("blue disc",))
    assert saved.negatives == ("teapot", "violin")
    assert best.referring == {}  # the referrer's defaults until thresholds are chosen for these weights


def test_the_lovasz_term_joins_the_loss_as_a_mean_over_the_batch(tmp_path):
    from lang_seg_ros.train.loss import lovasz_sum, lseg_loss_terms

    # seed 2: the first step reads the grid at offset (1, 0); batch 2: not the Lovasz term per rank
    cfg = _tiny_cfg(tmp_path, iterations=1, val=None, seed=2, batch_size=2,
                    loss={"lovasz_weight": 0.5, "lovasz_stride": 2})
    trainer = Trainer(cfg, progress=False)
    _, x, y, _ = trainer._make_batch(0, [0])
    sset = trainer.sets[0]
    trainer.model.train()
    with torch.no_grad():  # the first step's logits: the weights the step starts from
        logits = trainer.net(x, sset.text_features)
    total, count = lseg_loss_terms(logits, y, sset.ignore_index, sset.class_weights)
    offset = tuple(np.random.default_rng([cfg.seed, 3_000_017, 0]).integers(0, 2, 2))
    lovasz = lovasz_sum(logits, y, sset.ignore_index, 2, offset) / cfg.batch_size
    trainer.fit()
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert logged["iteration"] == 1 and 0 < lovasz.item() < 1
    assert logged["loss"] == pytest.approx((total / count + 0.5 * lovasz).item(), rel=1e-5)


def test_weight_average_is_what_validation_scores_and_the_checkpoint_holds(tmp_path):
    from lang_seg_ros.model import load_checkpoint

    cfg = _tiny_cfg(tmp_path, iterations=2, val_every=0, checkpoint_every=1,
                    optim={"optimizer": "adamw", "lr": 0.003, "backbone_lr_mult": 1.0, "schedule": "constant",
                           "ema_decay": 0.5})
    trainer = Trainer(cfg, progress=False)
    live = []  # the model's weights after each step
    update = trainer.ema.update
    trainer.ema.update = lambda step: (live.append({k: v.clone() for k, v in trainer.model.state_dict().items()}),
                                       update(step))
    trainer.fit()
    name = "scratch.head1.weight"
    expected = 0.5 * live[0][name] + 0.5 * live[1][name]  # step 1 copies, step 2 averages
    assert not torch.allclose(live[0][name], live[1][name])
    torch.testing.assert_close(trainer.evaluated_model.state_dict()[name], expected)
    saved = load_checkpoint(tmp_path / "run" / "best.safetensors")
    torch.testing.assert_close(saved.state_dict()[name], expected)
    # the frozen text encoder is shared, not averaged; resuming restores the average
    assert trainer.evaluated_model.text_encoder is trainer.model.text_encoder
    again = Trainer(cfg, progress=False)
    torch.testing.assert_close(again.evaluated_model.state_dict()[name], expected)
