"""KL estimators abs and the straight-through variants k1_st / k3_st / abs_st (verl 0.9
``kl_penalty`` "abs", "k1+", "k3+" / "low_var_kl+", "abs+"): values and gradients by hand."""
import math

import pytest
import torch

from groupo.registry import RegistryError, build

D = torch.float64
# token 0: logp -1, ref -1.5 (d = ref - logp = -.5); token 1: logp -1.5, ref -1 (d = +.5)
LOGP = [-1.0, -1.5]
REF = [-1.5, -1.0]


def value_and_grad(name):
    logp = torch.tensor(LOGP, dtype=D, requires_grad=True)
    k = build("kl", name, {})(logp, torch.tensor(REF, dtype=D))
    k.sum().backward()
    return k.detach().tolist(), logp.grad.tolist()


def close(a, b, tol=1e-6):
    assert len(a) == len(b) and all(abs(x - y) < tol for x, y in zip(a, b)), (a, b)


# values: k1 = logp - ref = [.5, -.5]; abs = [.5, .5]; k3 = e^d - d - 1 = [e^-.5 + .5 - 1, e^.5 - .5 - 1]
#         = [.106531, .148721]; the k2 gradient is logp - ref = [.5, -.5]
@pytest.mark.parametrize("name, value, grad", [
    ("abs", [0.5, 0.5], [1.0, -1.0]),                       # d|logp - ref|/dlogp = sign(logp - ref)
    ("k1_st", [0.5, -0.5], [0.5, -0.5]),                    # k1's value, k2's gradient (k1's would be [1, 1])
    ("k3_st", [0.106531, 0.148721], [0.5, -0.5]),           # k3's value, k2's gradient (k3's: 1 - e^d = [.393469, -.648721])
    ("abs_st", [0.5, 0.5], [0.5, -0.5]),
    ("k2", [0.125, 0.125], [0.5, -0.5]),                    # reference: verl "k2+" is plain k2
    ("k3", [0.106531, 0.148721], [1 - math.exp(-0.5), 1 - math.exp(0.5)]),
])
def test_kl_value_and_gradient(name, value, grad):
    v, g = value_and_grad(name)
    close(v, value)
    close(g, grad)


def test_straight_through_equals_k2_gradient_on_random_tokens():
    gen = torch.Generator().manual_seed(0)
    logp0 = -torch.rand(5, 7, generator=gen, dtype=D) * 3
    ref = -torch.rand(5, 7, generator=gen, dtype=D) * 3
    grads = {}
    for name in ("k2", "k1_st", "k3_st", "abs_st"):
        logp = logp0.clone().requires_grad_(True)
        build("kl", name, {})(logp, ref).sum().backward()
        grads[name] = logp.grad
    for name in ("k1_st", "k3_st", "abs_st"):
        assert torch.equal(grads[name], grads["k2"]), name
    k3 = build("kl", "k3", {})(logp0, ref)
    assert torch.allclose(build("kl", "k3_st", {})(logp0, ref), k3, atol=1e-15)   # same value as k3


def test_kl_none_error_names_the_new_estimators():
    with pytest.raises(RegistryError, match="abs"):
        build("kl", "none", {"coef": 0.1})
    assert build("kl", "abs_st", {"coef": 0.1}).coef == 0.1
