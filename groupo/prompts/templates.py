"""Prompt templates (axis ``template``): turn a task question into the model's input text.

``chat`` uses the tokenizer's own chat template (``apply_chat_template``), so the markup
follows the model family instead of being hard-coded; ``plain`` is prefix + question +
suffix for base models without a chat template. A tokenizer without a chat template, or one
whose template refuses the messages (Gemma's refuses a system turn), is a user error (one line,
exit code 2), not a traceback.
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
        from jinja2 import TemplateError

        from ..model.load import ModelError     # here: model/load.py imports torch

        if not getattr(tokenizer, "chat_template", None):
            raise ModelError("template.name=chat but the model's tokenizer has no chat template (a base model?); "
                             "use template.name=plain")
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": f"{self.prefix}{question}{self.suffix}"})
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError as e:
            hint = " (template.system='' sends no system turn)" if self.system else ""
            raise ModelError(f"template.name=chat: the tokenizer's chat template refused the prompt: "
                             f"{str(e).splitlines()[0][:160]}{hint}") from None


@register("template", "plain")
@dataclass(frozen=True)
class Plain(Template):
    prefix: str = ""
    suffix: str = ""

    def __call__(self, question: str, tokenizer) -> str:
        return f"{self.prefix}{question}{self.suffix}"
