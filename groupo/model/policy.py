"""A model together with how the loop runs it: its forward path and its compute dtype.

The training loop holds the policy being trained and, with a KL penalty, the reference policy
as ``Policy`` objects, so the forward path and autocast travel as explicit settings instead of
attributes set on the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..protocols import Forward


@dataclass
class Policy:
    model: Any                          # a transformers causal LM (or peft model / AdapterOff view)
    forward: Forward                    # the forward path component (axis ``forward``)
    autocast: torch.dtype | None = None   # compute dtype under autocast (None: the weights' dtype)

    def logprobs(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0,
                 with_entropy: bool = False, with_sum_pi2: bool = False):
        """Completion-token log-probs [N, T] (and entropies [N, T] when asked, else None); with
        ``with_sum_pi2`` a third output, sum_v pi_v^2 [N, T] (only then is the keyword passed on,
        so a forward component without it serves every other run)."""
        more = {"with_sum_pi2": True} if with_sum_pi2 else {}
        return self.forward.logprobs(self.model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                     temperature, with_entropy, autocast=self.autocast, **more)

    def parameters(self):
        return self.model.parameters()
