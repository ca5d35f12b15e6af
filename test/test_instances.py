"""Instances from label maps: splitting touching objects, merging fragments, stuff, mask pooling."""
from __future__ import annotations

import cv2
import numpy as np

from lang_seg_ros.objects.instances import classify_by_mask_pooling, split_instances


def two_touching_discs() -> np.ndarray:
    label_map = np.zeros((80, 140), np.int32)
    disc = np.zeros_like(label_map, np.uint8)
    cv2.circle(disc, (40, 40), 25, 1, -1)
    cv2.circle(disc, (88, 40), 25, 1, -1)  # overlaps the first: one connected blob with a neck
    label_map[disc > 0] = 1
    return label_map


def test_touching_objects_of_one_label_are_split():
    label_map = two_touching_discs()
    count, _ = cv2.connectedComponents((label_map == 1).astype(np.uint8))
    assert count - 1 == 1  # connected components alone see one object
    instances, labels = split_instances(label_map, stuff={0}, min_area=50)
    things = [i for i in range(1, len(labels)) if labels[i] == 1]
    assert len(things) == 2
    left, right = sorted(things, key=lambda i: np.nonzero(instances == i)[1].mean())
    assert instances[40, 40] == left and instances[40, 88] == right
    assert abs((instances == left).sum() - (instances == right).sum()) < 0.05 * (label_map == 1).sum()


def test_an_elongated_object_is_not_oversplit():
    label_map = np.zeros((60, 200), np.int32)
    label_map[20:40, 10:190] = 2  # a long bar: a plateau of the distance transform, one object
    instances, labels = split_instances(label_map, stuff={0}, min_area=10)
    assert labels[1:].tolist() == [0, 2]  # the background (stuff) and one bar
    assert len(np.unique(instances[label_map == 2])) == 1


def test_stuff_is_one_region_even_when_disconnected():
    label_map = np.ones((50, 100), np.int32)
    label_map[:, 40:60] = 0  # label 1 ("floor") in two pieces
    instances, labels = split_instances(label_map, stuff={1}, min_area=5)
    floor = [i for i in range(1, len(labels)) if labels[i] == 1]
    assert len(floor) == 1 and (instances == floor[0]).sum() == 80 * 50


def test_fragments_merge_into_their_neighbour_or_vanish():
    label_map = np.zeros((40, 40), np.int32)
    label_map[5:25, 5:25] = 1
    label_map[25:27, 10:12] = 1  # a 4-pixel fragment touching the square: merged
    label_map[35:37, 35:37] = 1  # an isolated 4-pixel speck: dropped
    instances, labels = split_instances(label_map, stuff={0}, min_area=20)
    squares = [i for i in range(1, len(labels)) if labels[i] == 1]
    assert len(squares) == 1
    assert instances[26, 11] == squares[0]
    assert instances[36, 36] == 0


def test_mask_pooling_classifies_the_whole_object():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(3, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    # Pixel embeddings: the object's pixels are noisy copies of label 2's embedding, with a few
    # pixels that individually look like label 0; pooling still says label 2.
    features = np.repeat(text[0][:, None, None], 20 * 20, axis=1).reshape(16, 20, 20)
    features[:, 5:15, 5:15] = text[2][:, None, None] + 0.3 * rng.normal(size=(16, 10, 10))
    features[:, 6:8, 6:8] = text[0][:, None, None]
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    instance_map = np.zeros((40, 40), np.int32)  # at twice the features' resolution
    instance_map[10:30, 10:30] = 1
    labels, scores = classify_by_mask_pooling(instance_map, features, text)
    assert labels[1] == 2 and scores[1] > 0.9
    assert labels[0] == -1


def test_a_diagonal_bar_is_one_instance():
    # The distance transform's ridge along a diagonal bar is a chain of equal peaks; they meet far
    # above h, so they seed one region (they used to seed one region each).
    label_map = np.zeros((200, 200), np.int32)
    cv2.line(label_map, (20, 20), (180, 180), 1, 15)
    instances, labels = split_instances(label_map, stuff={0}, min_area=50)
    assert labels.tolist() == [-1, 0, 1]
    assert len(np.unique(instances[label_map == 1])) == 1


def test_without_split_every_connected_piece_is_an_instance():
    label_map = two_touching_discs()
    label_map[5:8, 130:135] = 1  # a second, separate piece of label 1
    instances, labels = split_instances(label_map, stuff={0}, min_area=1, split=False)
    assert labels.tolist() == [-1, 0, 1, 1]
    assert instances[40, 40] == instances[40, 88] != instances[6, 132]
