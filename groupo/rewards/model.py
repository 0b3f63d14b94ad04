"""``reward_model``: completions scored by a sequence-classification model, as TRL's
``GRPOTrainer`` does when ``reward_funcs`` names a model (``_calculate_rewards``).

What we match: the model loads with ``AutoModelForSequenceClassification`` and its own tokenizer
(or ``tokenizer``); a missing pad token becomes the eos token and ``model.config.pad_token_id``
is set to it (the classifier reads the last non-pad token); a conversational item (``Item.messages``)
is scored on its prompt messages plus an assistant message with the completion, rendered by the
reward tokenizer's chat template (no generation prompt), any other row on ``prompt + completion``
(the prompt text the policy saw); texts are tokenized without special tokens, padded on the right,
run in eval mode without gradients, and the reward is ``logits[:, 0]``.

Where we differ: (1) TRL loads any checkpoint with ``num_labels=1``, so a causal-LM directory gets
a random score head without complaint; here a model that is not a ``...ForSequenceClassification``
with ``num_labels=1`` and a trained head is a one-line ``ModelError``. (2) Scoring runs in batches
of ``batch_size`` (rows sorted by length, so less padding), on its own ``device`` and ``dtype``.
(3) ``max_length`` truncates on the left, keeping the end of the completion, whose last token is
the one the score is read from (TRL does not truncate). (4) An assistant prefill (last prompt
message from the assistant) is continued by the completion in one message, not repeated.
(5) ``render: chat`` scores plain items as ``[user: question, assistant: completion]`` through the
reward model's chat template instead of the policy's prompt text; ``render: text`` never uses it.

The model is loaded on first use and kept for the process (one copy per path, tokenizer, device
and dtype), so building a config does not load weights; it does read the model's config, so a
missing directory, an offline uncached Hub id or a wrong architecture is reported at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..model.load import DTYPES, ModelError, _hub_error, load_tokenizer, pick_device, source
from ..protocols import Reward
from ..registry import register
from ..types import Item

_MODELS: dict[tuple, tuple] = {}     # (source, tokenizer source, device, dtype) -> (model, tokenizer)
_CONFIGS: dict[str, object] = {}     # source -> its checked config


def _source(path: str, what: str = "reward model") -> str:
    """``load.source`` (a local directory or a Hub id), its error naming what the path is for."""
    try:
        return source(path)
    except ModelError:
        raise ModelError(f"{what} directory '{path}' does not exist") from None


def _config(path: str):
    """The config of the reward model at ``path`` (weights not read), checked: a
    sequence-classification architecture with one label; else a one-line ModelError."""
    from pathlib import Path

    from transformers import AutoConfig

    src = _source(path)
    if src in _CONFIGS:
        return _CONFIGS[src]
    local = Path(src).exists()
    if local and not (Path(src) / "config.json").exists():
        raise ModelError(f"reward model '{path}' is not a Hugging Face model directory (no config.json)")
    try:
        cfg = AutoConfig.from_pretrained(src)
    except (OSError, ValueError) as e:
        if not local:
            raise _hub_error("reward model", src, e) from None
        raise ModelError(f"cannot read the config of reward model '{path}' ({str(e).splitlines()[0][:160]})") from None
    archs = list(getattr(cfg, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(f"reward model '{path}' is a {', '.join(archs)}, not a sequence-classification model "
                         f"(a ...ForSequenceClassification with num_labels=1, as TRL's reward models)")
    if archs and cfg.num_labels != 1:       # (no architectures: unknown; loaded with num_labels=1, as TRL)
        labels = ", ".join(str(v) for v in (getattr(cfg, "id2label", None) or {}).values())
        raise ModelError(f"reward model '{path}' has num_labels={cfg.num_labels}" + (f" ({labels})" if labels else "")
                         + "; a reward model gives one score per text (num_labels=1)")
    _CONFIGS[src] = cfg
    return cfg


def _load(path: str, tokenizer: str, device: str, dtype: str):
    """(model, tokenizer), loaded once per process and setting: eval mode, no gradients, the
    tokenizer's pad token (eos when it has none) told to the model config, as TRL does."""
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification

    src, tok_src = _source(path), _source(tokenizer or path, "reward tokenizer")
    key = (src, tok_src, device, dtype)
    if key in _MODELS:
        return _MODELS[key]
    _config(path)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=DTYPES[dtype],
                                                                         output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        if isinstance(e, OSError) and not Path(src).exists():
            raise _hub_error("reward model", src, e) from None
        why = "its score head does not have one output" if "mismatch" in str(e) else str(e).splitlines()[0][:160]
        raise ModelError(f"cannot load reward model '{path}' ({why})") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ModelError(f"reward model '{path}': its checkpoint lacks {', '.join(sorted(missing)[:3])}"
                         f"{' ...' if len(missing) > 3 else ''} (not a trained reward model)")
    tok = load_tokenizer(tok_src)        # pad = eos when missing (one-line error when neither exists)
    tok.truncation_side = "left"
    model.config.pad_token_id = tok.pad_token_id          # the classifier pools the last non-pad token
    model.config.get_text_config().pad_token_id = tok.pad_token_id     # (composite configs read this one)
    model.requires_grad_(False).eval()
    model.to(pick_device(device))
    _MODELS[key] = (model, tok)
    return model, tok


@register("reward", "reward_model")
@dataclass(frozen=True)
class RewardModel(Reward):
    """A sequence-classification reward model (local directory or Hub id) scores ``prompt +
    completion``; the reward is ``logits[:, 0]`` (TRL's model reward functions). ``tokenizer``:
    another tokenizer (default the model's), ``max_length``: truncate inputs on the left (0 = the
    model's limit), ``render``: auto (conversational items through the reward tokenizer's chat
    template, else prompt text + completion), chat (plain items too, as one user turn), text."""

    path: str = ""
    tokenizer: str = ""
    batch_size: int = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = 0
    render: Literal["auto", "chat", "text"] = "auto"

    def __post_init__(self):
        if not self.path:
            raise ModelError("reward 'reward_model' needs 'path' (a sequence-classification model directory or Hub id)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 0:
            raise ValueError(f"max_length must be >= 0 (0 = the model's limit), got {self.max_length}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ModelError("reward_model device=cuda but no CUDA device is available")
        _config(self.path)               # a missing or wrong model is reported when the config is built
        if self.tokenizer:
            _source(self.tokenizer, "reward tokenizer")

    def texts(self, completions: list[str], items: list[Item], prompts: list[str] | None, tok) -> list[str]:
        """The text each row is scored on (see the module docstring)."""
        has_template = bool(getattr(tok, "chat_template", None))
        if self.render == "chat" and not has_template:
            raise ModelError(f"reward_model render=chat but the tokenizer of '{self.tokenizer or self.path}' "
                             f"has no chat template")
        out = []
        for i, (c, it) in enumerate(zip(completions, items)):
            c = c if isinstance(c, str) else ""
            messages = [dict(m) for m in it.messages] if it.messages else None
            if messages is None and self.render == "chat":
                messages = [{"role": "user", "content": it.question}]
            if messages is not None and self.render != "text" and has_template:
                if messages[-1]["role"] == "assistant":          # a prefill: the completion continues it
                    messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + c}
                else:
                    messages.append({"role": "assistant", "content": c})
                out.append(_chat(messages, tok))
            else:
                out.append((prompts[i] if prompts is not None else it.question) + c)
        return out

    def _limit(self, model, tok) -> int | None:
        if self.max_length:
            return self.max_length
        limits = [n for n in (getattr(model.config.get_text_config(), "max_position_embeddings", None),
                              getattr(tok, "model_max_length", None)) if isinstance(n, int) and 0 < n < 10**8]
        return min(limits) if limits else None

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids=None, state=None) -> list[float | None]:
        if len(completions) != len(items) or (prompts is not None and len(prompts) != len(items)):
            raise ValueError(f"reward 'reward_model': {len(completions)} completions, {len(items)} items"
                             + (f", {len(prompts)} prompts" if prompts is not None else ""))
        if not completions:
            return []
        model, tok = _load(self.path, self.tokenizer, self.device, self.dtype)
        texts = self.texts(list(completions), items, prompts, tok)
        limit = self._limit(model, tok)
        ids = tok(texts, add_special_tokens=False, truncation=limit is not None, max_length=limit)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        device = next(model.parameters()).device
        out = [0.0] * len(ids)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                width = max(1, max(len(ids[i]) for i in rows))
                x = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)   # right padding
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, i in enumerate(rows):
                    x[j, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[j, :len(ids[i])] = 1
                scores = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits[:, 0]
                for i, s in zip(rows, scores.float().cpu().tolist()):
                    out[i] = s
        return out


def _chat(messages: list[dict], tok) -> str:
    """The whole conversation through the tokenizer's chat template (TRL's ``apply_chat_template``
    of ``{"messages": prompt + completion}``: no generation prompt)."""
    from jinja2 import TemplateError

    try:
        return tok.apply_chat_template(messages, tokenize=False)
    except TemplateError as e:
        raise ModelError(f"the reward model's chat template refused the messages ({e})") from None
