"""The bench's reward, identical for both libraries (TRL signature): 1.0 iff the completion
starts with exactly the right number."""
import re

_NUM = re.compile(r"^\s*(\d+)")


def reward(completions, answer, **kwargs):
    out = []
    for c, a in zip(completions, answer):
        m = _NUM.match(c if isinstance(c, str) else "")
        out.append(1.0 if m and m.group(1) == str(a) else 0.0)
    return out
