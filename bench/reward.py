"""The bench's reward, identical for both libraries (TRL signature). Shaped so that even a
random model's groups carry signal (both libraries then do real backward work, as in
../shared/bench's `--reward shaped` variant): 1.0 for exactly the right number at the start,
0.5 for the right first digit, 0.1 for starting with any digit, else 0."""
import re

_NUM = re.compile(r"^\s*(\d+)")


def reward(completions, answer, **kwargs):
    out = []
    for c, a in zip(completions, answer):
        m = _NUM.match(c if isinstance(c, str) else "")
        if not m:
            out.append(0.0)
        elif m.group(1) == str(a):
            out.append(1.0)
        else:
            out.append(0.5 if m.group(1)[0] == str(a)[0] else 0.1)
    return out
