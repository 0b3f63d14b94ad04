"""Prompt augmentation for GRPO (ALGORITHMS.md §14; wenquanlu/prompt-augmentation-GRPO,
arXiv 2602.03190): train with many reasoning templates at once, each with its own
format reward.

* ``TEMPLATES``: module-level registry {name: PromptTemplate}. All 13 templates of §14
  (abel, simplerl, qwen-math, open-r1, open-r1-teacher, deepseek-r1, deepseek-r1-teacher,
  formal, lm_eval_prompt1/4/8, reflective_prompt, reflective_prompt-teacher). The
  instruction texts are our rewrites of the repo's ``verl/utils/dataset/templates.py``
  (gists in §14), not verbatim copies; the markup comes from the tokenizer's own chat
  template instead of the repo's hard-coded Qwen tokens.
* ``prompt_augmentation`` (axis ``template``): picks a template per prompt and renders it.
  The repo draws ``random.choice`` per ``__getitem__`` (unseeded per worker); we draw from
  a generator seeded on (seed, epoch, index) [INFERRED improvement, §14 d]:
  ``choose(epoch, index)``, which the loop reaches through ``render_at(question, tokenizer,
  step, index)``. A plain ``__call__(question, tokenizer)`` (evaluation) keys the draw on a
  stable hash (blake2b) of the question text instead. All G rollouts of a prompt share the template because the
  loop renders each prompt once per group and repeats the text G times (as verl does).
* ``template_format`` (axis ``reward``): the format reward of the template each prompt
  used, found from the rendered prompt text (``template_of``). ``scoring="regex"`` (default):
  1.0 if the template's ``pattern`` matches prefill + completion (re.DOTALL), else 0.0.
  ``scoring="parts"`` (the repo's ``format_reward.py``): each marker string in ``parts``
  that occurs exactly once in the completion earns 1/len(parts); templates with no parts
  earn 1.0 (the repo gives those templates a constant 1). None (skip) when the template is
  unknown or no prompts were given. The repo's total reward is correct + format, r in [0, 2]:
  use rewards [{name: correct}, {name: template_format}].
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Literal

from ..protocols import Reward, Template
from ..registry import register
from ..types import Item


@dataclass(frozen=True)
class PromptTemplate:
    """One reasoning template: ``system`` (the instruction), ``user_suffix`` (appended to the
    question), ``prefill`` (start of the assistant turn), ``pattern`` (answer-format regex,
    matched against prefill + completion), ``parts`` (markers for the repo's partial credit)."""

    name: str
    description: str
    system: str
    user_suffix: str = ""
    prefill: str = ""
    pattern: str = r"\\boxed\{.+?\}"
    parts: tuple[str, ...] = ()

    @property
    def instruction(self) -> str:
        return self.system + self.user_suffix

    def markers(self) -> list[str]:
        return [m for m in (self.system, self.user_suffix) if m]


_BOXED = "put your final answer within \\boxed{}."
_STEP = "Please reason step by step, and " + _BOXED
_R1_OPEN = ("You are a helpful assistant. First think through the reasoning, then give the answer. "
            "Respond in the format <think>\n...\n</think>\n<answer>\n...\n</answer>, with the final "
            "answer within \\boxed{} inside the answer tags.")
_R1 = ("A conversation between User and Assistant. The User asks a question and the Assistant solves "
       "it. The Assistant first thinks about the reasoning process and then gives the User the answer. "
       "The reasoning and the answer are enclosed in <think> </think> and <answer> </answer> tags, "
       "i.e. <think> reasoning here </think> <answer> answer here </answer>. Put the final answer "
       "within \\boxed{}.")
_LM1 = ("Solve the following math challenge. Explain your approach step-by-step\n"
        "The answer should end with: The final answer is: \\boxed{answer}\n"
        "where [answer] is just the final number or expression that solves the problem.")
_LM4_SUFFIX = ("\nEnd the answer with:\nThe final answer is: \\boxed{answer} where [answer] is just "
               "the final number or expression that solves the problem.")
_REFL = ("Solve the problem below. Write out your reasoning, then check it. Respond in exactly the "
         "following format:\n<solution>\n...\n</solution>\n<check>\nLet's verify step by step ...\n"
         "</check>\nPut your final answer within \\boxed{}.")
_FA = "The final answer is:"
_ONCE_FA = r"\A(?:(?!The final answer is:).)*The final answer is:(?:(?!The final answer is:).)*\Z"
# Tag bodies may not contain the template's own tags, so a repeated tag fails the format.
_NT = r"(?:(?!</?think>|</?answer>).)*?"
_NS = r"(?:(?!</?solution>|</?check>).)*?"
_OPEN_PAT = rf"\A<think>\n{_NT}\n</think>\n<answer>\n{_NT}\n</answer>\s*\Z"
_R1_PAT = rf"\A\s*<think>{_NT}</think>\s*<answer>{_NT}</answer>\s*\Z"
_REFL_PAT = rf"\A\s*<solution>\n{_NS}\n</solution>\n<check>\nLet's verify step by step{_NS}\n</check>\s*\Z"
_OPEN_PARTS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
_R1_PARTS = ("<think>", "</think>", "<answer>", "</answer>")
_REFL_PARTS = ("<solution>\n", "\n</solution>\n", "\n<check>\nLet's verify step by step", "\n</check>")

TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (
    PromptTemplate("abel", "step-by-step + boxed, assistant prefill 'Let's think step by step.'",
                   _STEP, prefill="Let's think step by step.\n"),
    PromptTemplate("simplerl", "generic system prompt, boxed instruction after the question",
                   "You are a helpful assistant that solves math problems.", user_suffix="\n" + _STEP),
    PromptTemplate("qwen-math", "Qwen2.5-Math system prompt: step by step + boxed", _STEP),
    PromptTemplate("open-r1", "<think>/<answer> format with newlines, boxed inside the answer",
                   _R1_OPEN, pattern=_OPEN_PAT, parts=_OPEN_PARTS),
    PromptTemplate("open-r1-teacher", "open-r1 with the assistant prefilled '<think>\\n'",
                   _R1_OPEN, prefill="<think>\n", pattern=_OPEN_PAT, parts=_OPEN_PARTS[1:]),
    PromptTemplate("deepseek-r1", "R1-Zero conversation prompt, <think> </think> <answer> </answer>",
                   _R1, pattern=_R1_PAT, parts=_R1_PARTS),
    PromptTemplate("deepseek-r1-teacher", "deepseek-r1 with the assistant prefilled '<think>'",
                   _R1, prefill="<think>", pattern=_R1_PAT, parts=_R1_PARTS[1:]),
    PromptTemplate("formal", "rigorous step-by-step derivation, boxed",
                   "You are an intelligent assistant for mathematics. Give a rigorous, step-by-step "
                   "derivation and " + _BOXED),
    PromptTemplate("lm_eval_prompt1", "lm-eval style: end with 'The final answer is: \\boxed{}'",
                   _LM1, prefill="Let's think step by step", pattern=_ONCE_FA, parts=(_FA,)),
    PromptTemplate("lm_eval_prompt4", "lm-eval style, the instruction after the question",
                   "Analyze and solve the math task.", user_suffix=_LM4_SUFFIX, pattern=_ONCE_FA, parts=(_FA,)),
    PromptTemplate("lm_eval_prompt8", "lm-eval style: show each step, boxed",
                   "Solve the following math problem\nShow each step of your solution\n"
                   "Put the final answer within \\boxed{}", prefill="Let's think step by step"),
    PromptTemplate("reflective_prompt", "<solution> then <check> (self-verification), boxed",
                   _REFL, pattern=_REFL_PAT, parts=_REFL_PARTS),
    PromptTemplate("reflective_prompt-teacher", "reflective_prompt with the assistant prefilled '<solution>\\n'",
                   _REFL, prefill="<solution>\n", pattern=_REFL_PAT, parts=_REFL_PARTS[1:]),
)}


def template_of(prompt: str, names: tuple[str, ...] = ()) -> str | None:
    """The template whose instruction (system text, user suffix) the rendered ``prompt``
    contains and whose prefill it ends with; the most specific (longest markers) wins, so
    'abel' beats 'qwen-math' (same instruction plus a prefill). None if nothing matches.
    Limitation: a question that quotes another template's instruction can fool it."""
    best, best_len = None, -1
    for name in names or tuple(TEMPLATES):
        t = TEMPLATES[name]
        if not all(m in prompt for m in t.markers()):
            continue
        if t.prefill and not prompt.endswith(t.prefill):
            continue
        size = sum(len(m) for m in t.markers()) + len(t.prefill)
        if size > best_len:
            best, best_len = name, size
    return best


def format_score(name: str, completion: str, scoring: str = "regex") -> float:
    """Format reward in [0, 1] of ``completion`` under template ``name`` (see module doc)."""
    t = TEMPLATES[name]
    if scoring == "parts":
        if not t.parts:
            return 1.0
        return sum(1.0 for p in t.parts if completion.count(p) == 1) / len(t.parts)
    return 1.0 if re.search(t.pattern, t.prefill + completion, re.DOTALL) else 0.0


def _check_names(names: tuple[str, ...], where: str) -> None:
    for n in names:
        if n not in TEMPLATES:
            raise ValueError(f"{where}: unknown template {n!r}; known: {', '.join(TEMPLATES)}")


def _key(*parts) -> int:
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


@register("template", "prompt_augmentation")
@dataclass(frozen=True)
class PromptAugmentation(Template):
    """Uniform draw over ``templates`` (empty = all of ``TEMPLATES``), seeded on
    (seed, epoch, index). ``use_chat``: markup from ``tokenizer.apply_chat_template`` when
    the tokenizer has a chat template, else plain text. ``instruction_role``: 'system'
    (the repo: the instruction is the system message) or 'user' (prepended to the user
    turn, for chat templates without a system role)."""

    templates: tuple[str, ...] = ()
    seed: int = 0
    use_chat: bool = True
    instruction_role: Literal["system", "user"] = "system"

    def __post_init__(self):
        _check_names(self.templates, "prompt_augmentation.templates")

    @property
    def names(self) -> tuple[str, ...]:
        return self.templates or tuple(TEMPLATES)

    def choose(self, epoch: int, index: int) -> str:
        """Template name for prompt ``index`` in ``epoch``: a pure function of (seed, epoch, index)."""
        rng = random.Random(_key("prompt_aug", self.seed, int(epoch), int(index)))
        return self.names[rng.randrange(len(self.names))]

    def choose_for_text(self, question: str) -> str:
        """Template name keyed on a stable hash of the question (used by ``__call__``)."""
        rng = random.Random(_key("prompt_aug_text", self.seed, hashlib.blake2b(question.encode()).hexdigest()))
        return self.names[rng.randrange(len(self.names))]

    def render(self, question: str, tokenizer, name: str) -> str:
        t = TEMPLATES[name]
        user = question + t.user_suffix
        if self.instruction_role == "user":
            user = f"{t.system}\n\n{user}"
        if self.use_chat and tokenizer is not None and getattr(tokenizer, "chat_template", None):
            messages = [] if self.instruction_role == "user" else [{"role": "system", "content": t.system}]
            messages.append({"role": "user", "content": user})
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text + t.prefill
        head = "" if self.instruction_role == "user" else f"{t.system}\n\n"
        return f"{head}User: {user}\nAssistant: {t.prefill}"

    def __call__(self, question: str, tokenizer) -> str:
        return self.render(question, tokenizer, self.choose_for_text(question))

    def render_at(self, question: str, tokenizer, step: int, index: int) -> str:
        """Prompt ``index`` of ``step`` in training: the template ``choose(step, index)`` draws."""
        return self.render(question, tokenizer, self.choose(step, index))


@register("reward", "template_format")
@dataclass(frozen=True)
class TemplateFormat(Reward):
    """Format reward of the template each completion's prompt used (see module doc).
    ``templates``: restrict ``template_of`` to these names (empty = all)."""

    scoring: Literal["regex", "parts"] = "regex"
    templates: tuple[str, ...] = ()

    def __post_init__(self):
        _check_names(self.templates, "template_format.templates")

    def __call__(self, completions: list[str], items: list[Item], prompts: list[str] | None = None,
                 completion_ids=None, state=None) -> list[float | None]:
        if len(completions) != len(items):
            raise ValueError(f"reward 'template_format': {len(completions)} completions but {len(items)} items")
        if prompts is None:
            return [None] * len(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"reward 'template_format': {len(completions)} completions but {len(prompts)} prompts")
        names: dict[str, str | None] = {}  # the G rollouts of a prompt share its text: look it up once
        out: list[float | None] = []
        for c, p in zip(completions, prompts):
            if p not in names:
                names[p] = template_of(p, self.templates)
            name = names[p]
            out.append(None if name is None or not isinstance(c, str) else format_score(name, c, self.scoring))
        return out
