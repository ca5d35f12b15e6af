"""The label and expression policy (lang_seg_ros/inference/labels.py): what is accepted, what is
refused, and the exact reason given, since the reason is what a user or a ROS client sees."""
from __future__ import annotations

import re

import pytest

from lang_seg_ros.inference.labels import (MAX_EXPRESSION_CHARS, MAX_INPUT_CHARS, MAX_LABEL_CHARS, MAX_LABELS,
                                           LabelSpec, clean_expression, clean_labels, parse_label_spec,
                                           parse_labels)


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_parse_labels_splits_on_commas_and_strips_each_label():
    assert parse_labels(" dog, grass ,other ") == ["dog", "grass", "other"]
    assert parse_labels("a,,b,") == ["a", "", "b", ""]  # blank entries are skipped later, by clean_labels
    assert parse_labels("big  dog") == ["big  dog"]  # inner whitespace is collapsed later


def test_clean_labels_collapses_whitespace_and_skips_blank_entries():
    assert clean_labels(" dog ,, grass , other,") == ("dog", "grass", "other")
    assert clean_labels(["  big \t  dog ", "", "   ", "cat"]) == ("big dog", "cat")
    assert clean_labels(("a",)) == ("a",)


def test_tabs_and_newlines_are_whitespace_not_control_characters():
    assert clean_labels(["big\tdog\nhouse"]) == ("big dog house",)


@pytest.mark.parametrize("char, category", [("\x00", "Cc"), ("\x7f", "Cc"), ("\u200b", "Cf"), ("\ud800", "Cs"),
                                            ("\ue000", "Co"), ("\u0378", "Cn")])
def test_every_kind_of_control_character_is_refused(char, category):
    text = f"car{char}x"
    message = f"label {text!r} contains control characters"
    with pytest.raises(ValueError, match=exactly(message)):
        clean_labels(["road", text])
    with pytest.raises(ValueError, match=exactly(f"referring expression {text!r} contains control characters")):
        clean_expression(text)


def test_long_texts_are_quoted_by_their_first_40_characters():
    long = "abcdefghij" * 5 + "\x00"
    with pytest.raises(ValueError, match=exactly(f"label {long[:40]!r} contains control characters")):
        clean_labels([long])
    twice = "k" * 45
    with pytest.raises(ValueError, match=exactly(f"duplicate label {twice[:40]!r}: give each label once")):
        clean_labels([twice, "road", twice])
    with pytest.raises(ValueError, match=exactly(f"duplicate label {twice.upper()[:40]!r} (same as {twice[:40]!r}: "
                                                 "case is ignored): give each label once")):
        clean_labels([twice, twice.upper()])


def test_the_empty_set_is_refused_with_an_example():
    for empty in ("", " , ,", [], ["", "  "]):
        with pytest.raises(ValueError, match=exactly(
                "the label set is empty: give at least one non-empty label, e.g. 'floor, person, other'")):
            clean_labels(empty)


def test_too_many_labels_are_refused_never_cut():
    assert len(clean_labels([f"l{i}" for i in range(MAX_LABELS)])) == MAX_LABELS
    with pytest.raises(ValueError, match=exactly(f"{MAX_LABELS + 1} labels given, at most max_labels={MAX_LABELS} "
                                                 "are allowed")):
        clean_labels([f"l{i}" for i in range(MAX_LABELS + 1)])
    assert clean_labels("a, b, c", max_labels=3) == ("a", "b", "c")
    with pytest.raises(ValueError, match=exactly("3 labels given, at most max_labels=2 are allowed")):
        clean_labels("a, b, c", max_labels=2)
    # a larger limit than the policy's is the policy's
    with pytest.raises(ValueError, match=f"at most max_labels={MAX_LABELS} are allowed"):
        clean_labels([f"l{i}" for i in range(MAX_LABELS + 1)], max_labels=10 * MAX_LABELS)


def test_too_long_labels_are_refused_never_cut():
    assert clean_labels(["x" * MAX_LABEL_CHARS]) == ("x" * MAX_LABEL_CHARS,)
    with pytest.raises(ValueError, match=exactly(f"a label of {MAX_LABEL_CHARS + 1} characters exceeds "
                                                 f"max_label_chars={MAX_LABEL_CHARS}")):
        clean_labels(["x" * (MAX_LABEL_CHARS + 1)])
    assert clean_labels(["abcd"], max_label_chars=4) == ("abcd",)
    with pytest.raises(ValueError, match=exactly("a label of 5 characters exceeds max_label_chars=4")):
        clean_labels(["abcde"], max_label_chars=4)
    with pytest.raises(ValueError, match=f"exceeds max_label_chars={MAX_LABEL_CHARS}"):
        clean_labels(["x" * (MAX_LABEL_CHARS + 1)], max_label_chars=4 * MAX_LABEL_CHARS)
    # the length is counted after whitespace is collapsed
    assert clean_labels(["a" + " " * 300 + "b"]) == ("a b",)


def test_labels_must_be_strings():
    with pytest.raises(ValueError, match=exactly("label must be a string, got int")):
        clean_labels(["road", 7])
    with pytest.raises(ValueError, match=exactly("label must be a string, got NoneType")):
        parse_label_spec(["road", None])


def test_duplicates_are_refused_and_case_is_ignored():
    with pytest.raises(ValueError, match=exactly("duplicate label 'car': give each label once")):
        clean_labels("car, road, car")
    with pytest.raises(ValueError, match=exactly("duplicate label 'CAR' (same as 'car': case is ignored): "
                                                 "give each label once")):
        clean_labels("car, road, CAR")
    with pytest.raises(ValueError, match="duplicate label 'big dog'"):
        clean_labels(["big dog", "big   dog"])  # equal once whitespace is collapsed
    with pytest.raises(ValueError, match="same as 'Straße'"):
        clean_labels(["Straße", "STRASSE"])  # casefold, not lower: German ß is ss


def test_texts_longer_than_the_input_bound_are_refused_before_anything_else():
    too_long = "a" * (MAX_INPUT_CHARS + 1)
    with pytest.raises(ValueError, match=exactly(f"a label text of {MAX_INPUT_CHARS + 1} characters is longer than "
                                                 f"the {MAX_INPUT_CHARS} read at all")):
        parse_labels(too_long)
    with pytest.raises(ValueError, match=exactly(f"a label of {MAX_INPUT_CHARS + 1} characters is longer than "
                                                 f"the {MAX_INPUT_CHARS} read at all")):
        clean_labels(["road", too_long])
    with pytest.raises(ValueError, match=exactly(f"a label of {MAX_INPUT_CHARS + 1} characters is longer than "
                                                 f"the {MAX_INPUT_CHARS} read at all")):
        parse_label_spec(["road", too_long])
    with pytest.raises(ValueError, match=exactly(f"a referring expression of {MAX_INPUT_CHARS + 1} characters is "
                                                 f"longer than the {MAX_INPUT_CHARS} read at all")):
        clean_expression(too_long)
    assert parse_labels("a" * MAX_INPUT_CHARS) == ["a" * MAX_INPUT_CHARS]  # at the bound: read


def test_label_spec_marks_and_named_stuff():
    spec = parse_label_spec("floor:stuff, chair, Wall : Stuff, mug")
    assert spec == LabelSpec(("floor", "chair", "Wall", "mug"), (True, False, True, False))
    assert spec.stuff == frozenset({0, 2})
    named = parse_label_spec(["floor", "chair", "big  Rug"], stuff_labels="FLOOR, big rug")
    assert named.labels == ("floor", "chair", "big Rug") and named.stuff == frozenset({0, 2})
    listed = parse_label_spec("floor, chair", stuff_labels=["chair", "", "  "])
    assert listed.is_stuff == (False, True)
    assert parse_label_spec("floor, chair").stuff == frozenset()
    assert parse_label_spec(["big   dog:stuff", "cat"]).is_stuff == (True, False)  # the mark's text collapsed too


def test_only_the_last_colon_can_be_a_stuff_mark():
    spec = parse_label_spec("a:b:stuff, c:stuff:d, stuff, e:stuff")
    assert spec.labels == ("a:b", "c:stuff:d", "stuff", "e") and spec.is_stuff == (True, False, False, True)


def test_label_spec_refusals_name_the_reason():
    with pytest.raises(ValueError, match="duplicate label 'floor'"):
        parse_label_spec("floor:stuff, floor")
    with pytest.raises(ValueError, match=exactly(f"{MAX_LABELS + 1} stuff labels given, at most {MAX_LABELS} are "
                                                 "allowed")):
        parse_label_spec("floor", stuff_labels=["s"] * (MAX_LABELS + 1))
    with pytest.raises(ValueError, match=exactly("stuff label 'a\\x00' contains control characters")):
        parse_label_spec("floor", stuff_labels=["a\x00"])
    with pytest.raises(ValueError, match=exactly("a stuff label of 5 characters exceeds max_label_chars=4")):
        parse_label_spec("mug", stuff_labels=["abcde"], max_label_chars=4)
    with pytest.raises(ValueError, match=exactly("a label of 5 characters exceeds max_label_chars=4")):
        parse_label_spec("abcde:stuff", max_label_chars=4)
    assert parse_label_spec("abcd:stuff", max_label_chars=4).labels == ("abcd",)  # the mark does not count
    with pytest.raises(ValueError, match=exactly("2 labels given, at most max_labels=1 are allowed")):
        parse_label_spec("a, b", max_labels=1)
    assert len(parse_label_spec("x", stuff_labels=["s"] * MAX_LABELS).labels) == 1


def test_clean_expression():
    assert clean_expression("  the   car\ton the left ") == "the car on the left"
    assert clean_expression("") == "" and clean_expression("   ") == ""
    assert clean_expression("x" * MAX_EXPRESSION_CHARS) == "x" * MAX_EXPRESSION_CHARS
    with pytest.raises(ValueError, match=exactly(f"a referring expression of {MAX_EXPRESSION_CHARS + 1} characters "
                                                 f"exceeds max_expression_chars={MAX_EXPRESSION_CHARS}")):
        clean_expression("x" * (MAX_EXPRESSION_CHARS + 1))
    with pytest.raises(ValueError, match=exactly("a referring expression of 5 characters exceeds "
                                                 "max_expression_chars=4")):
        clean_expression("abcde", max_chars=4)
    with pytest.raises(ValueError, match=f"exceeds max_expression_chars={MAX_EXPRESSION_CHARS}"):
        clean_expression("x" * (MAX_EXPRESSION_CHARS + 1), max_chars=10 * MAX_EXPRESSION_CHARS)
    with pytest.raises(ValueError, match=exactly("referring expression must be a string, got bytes")):
        clean_expression(b"car")
