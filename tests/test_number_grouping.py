"""Issue 22: the ``number`` checker accepts digit separators only as thousands grouping
(exactly three digits per group after the first, one kind of separator per number)."""
import pytest

from groupo.rewards import checkers, verify


@pytest.mark.parametrize("completion, gold", [
    ("<answer>4 2</answer>", "42"),               # the cases: a space is not a decimal joiner
    ("<answer>42 0</answer>", "420"),
    ("<answer>1 00</answer>", "100"),
    ("<answer>1,00</answer>", "100"),              # comma grouping must be in threes too
    ("<answer>1,0000</answer>", "10000"),
    ("<answer>12,34</answer>", "1234"),            # lakh grouping is not accepted
    ("<answer>1234,567</answer>", "1234567"),      # first group longer than 3
    ("<answer>1234 567</answer>", "1234567"),
    ("<answer>1,000 000</answer>", "1000000"),     # two kinds of separator in one number
    ("<answer>1,,000</answer>", "1000"),
    ("<answer>1, 000</answer>", "1000"),
    ("<answer>0.123 4</answer>", "0.1234"),        # no separators after the decimal point
    ("<answer>-4 2</answer>", "-42"),
    ("\\boxed{4 2}", "42"),
    ("#### 42 0", "420"),
])
def test_misgrouped_numbers_score_zero(completion, gold):
    assert verify(completion, gold, "number") == 0.0


@pytest.mark.parametrize("completion, gold", [
    ("<answer>1 000</answer>", "1000"),
    ("<answer>12 345 678</answer>", "12345678"),
    ("<answer>1,000</answer>", "1000"),
    ("<answer>12,345,678</answer>", "12345678"),
    ("<answer>1{,}000</answer>", "1000"),          # LaTeX comma (was 0 before: ',' was removed first)
    ("<answer>1\\,000</answer>", "1000"),          # LaTeX thin space (likewise)
    ("<answer>1\u202f000</answer>", "1000"),       # narrow no-break space
    ("<answer>-1 000</answer>", "-1000"),
    ("<answer>1 000.25</answer>", "1000.25"),
    ("<answer>$1,234.</answer>", "1234"),
    ("<answer>- 5</answer>", "-5"),                # spaces next to a sign, $ or % are not between digits
    ("<answer>$ 42</answer>", "42"),
    ("<answer>42 %</answer>", "42"),
    ("<answer>3 / 4</answer>", "0.75"),
    ("<answer>1 000/2</answer>", "500"),
])
def test_grouped_numbers_still_score_one(completion, gold):
    assert verify(completion, gold, "number") == 1.0


def test_parse_number_grouping_directly():
    assert checkers.parse_number("1 000") == 1000 and checkers.parse_number("999") == 999
    assert checkers.parse_number("4 2") is None and checkers.parse_number("1,00") is None
    assert checkers.parse_number("12 345,678") is None
    assert checkers.number("42 0", "420") == 0.0 and checkers.number("42 0", "42") == 0.0   # two numbers: a hedge
