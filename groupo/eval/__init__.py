"""Evaluation: metrics (pass@k, maj@k, per-group summaries) and run reports.

``report`` (matplotlib) is imported lazily so that ``groupo.eval.metrics`` stays cheap.
"""
from groupo.eval.metrics import maj_at_k, natural_key, pass_at_k, summarize

__all__ = ["pass_at_k", "maj_at_k", "summarize", "natural_key",
           "load_metrics", "make_plots", "write_report"]


def __getattr__(name: str):
    if name in ("load_metrics", "make_plots", "write_report"):
        from groupo.eval import report

        return getattr(report, name)
    raise AttributeError(f"module 'groupo.eval' has no attribute {name!r}")
