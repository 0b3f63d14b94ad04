"""Prompt templates (axis ``template``): turn a task question into the model's input text.

``chat`` uses the tokenizer's own chat template (``apply_chat_template``), so the markup
follows the model family instead of being hard-coded; ``plain`` is prefix + question +
suffix for base models without a chat template.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..protocols import Template
from ..registry import register


@register("template", "chat")
@dataclass(frozen=True)
class Chat(Template):
    system: str = ""
    prefix: str = ""
    suffix: str = ""

    def __call__(self, question: str, tokenizer) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat': the tokenizer has no chat template; use template.name=plain")
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": f"{self.prefix}{question}{self.suffix}"})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@register("template", "plain")
@dataclass(frozen=True)
class Plain(Template):
    prefix: str = ""
    suffix: str = ""

    def __call__(self, question: str, tokenizer) -> str:
        return f"{self.prefix}{question}{self.suffix}"
