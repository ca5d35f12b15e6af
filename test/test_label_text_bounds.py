"""Text a sender controls is read in time linear in its length and refused, before anything
else, when it is longer than `MAX_INPUT_CHARS`. A label of 40,000 spaces took 3 s (a ":stuff"
suffix pattern backtracked before whitespace was collapsed) while the node's executor waited."""
import signal

import pytest

from lang_seg_ros.inference.labels import MAX_INPUT_CHARS, clean_expression, parse_label_spec


@pytest.fixture
def deadline():
    """Fail instead of hanging: 5 s is ~100x what linear work needs here, and a small fraction of
    what the quadratic suffix rule took (500,000 spaces: minutes)."""
    def expired(signum, frame):
        raise TimeoutError("label text processing is not linear in its length")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("mark", ["", ":stuff", " : STUFF "])
def test_long_whitespace_collapses_in_linear_time(deadline, mark):
    spec = parse_label_spec(["x" + " " * 500_000 + "y" + mark, "road"])
    assert spec.labels == ("x y", "road") and spec.is_stuff == (bool(mark), False)
    assert parse_label_spec("x" + " " * 500_000 + "y, road").labels == ("x y", "road")


def test_the_stuff_mark_is_the_last_colon_only():
    spec = parse_label_spec("floor : STUFF, a:b, mug:stuffy, sign: stuff")
    assert spec.labels == ("floor", "a:b", "mug:stuffy", "sign") and spec.is_stuff == (True, False, False, True)


@pytest.mark.parametrize("call", [lambda t: parse_label_spec(t), lambda t: parse_label_spec([t, "road"]),
                                  lambda t: clean_expression(t)])
def test_text_beyond_the_input_bound_is_refused_before_it_is_read(deadline, call):
    with pytest.raises(ValueError, match=f"longer than the {MAX_INPUT_CHARS} read at all"):
        call("a" * (MAX_INPUT_CHARS + 1))
