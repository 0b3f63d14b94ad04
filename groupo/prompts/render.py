"""An item -> the prompt text the model sees: a conversational prompt (chat messages) through the
tokenizer's chat template, a plain question through the run's template (``template.render_at``
for prompt ``index`` of training ``step``, ``template(question, tokenizer)`` otherwise)."""
from __future__ import annotations


def chat_prompt(messages, tokenizer) -> str:
    """Chat messages -> prompt text with the generation prompt appended (or, when the last
    message is the assistant's, continued as a prefill, as TRL does). One-line ModelError when
    the tokenizer has no chat template or its template refuses the messages."""
    from jinja2 import TemplateError

    from ..model.load import ModelError

    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("the prompts are chat messages but the model's tokenizer has no chat template "
                         "(a base model?); give string prompts or a model with a chat template")
    messages = [dict(m) for m in messages]
    prefill = messages[-1]["role"] == "assistant"
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefill,
                                             continue_final_message=prefill)
    except TemplateError as e:
        raise ModelError(f"the tokenizer's chat template refused the messages ({e})") from None


def render(template, item, tokenizer, step: int | None = None, index: int = 0, question: str | None = None) -> str:
    """The prompt text of ``item``; ``question`` replaces a plain item's question (R³ reflection)."""
    if item.messages:
        return template.render_messages(item.messages, tokenizer)
    q = item.question if question is None else question
    return template(q, tokenizer) if step is None else template.render_at(q, tokenizer, step, index)
