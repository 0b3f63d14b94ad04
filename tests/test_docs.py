"""docs/algorithms.md is generated from the registry; it must match the code."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_algorithms_doc_is_current():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts/gen_algorithms_doc.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "docs/algorithms.md").read_text() == gen.render(), \
        "docs/algorithms.md is stale: run python scripts/gen_algorithms_doc.py"
