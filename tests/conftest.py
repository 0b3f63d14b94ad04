import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A random-init tiny model + tokenizer directory, built once per test session."""
    from groupo.model.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0, hidden=64, layers=2, heads=2)


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from groupo.model.load import load_model, load_tokenizer

    torch_model = load_model(tiny_dir)
    return torch_model, load_tokenizer(tiny_dir)


@pytest.fixture
def fake_vllm(monkeypatch):
    """A fake ``vllm`` module whose engine samples with the training model (tests/fake_vllm.py)."""
    from fake_vllm import install

    yield from install(monkeypatch)
