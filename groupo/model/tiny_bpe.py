"""A tiny Qwen2 (or Llama) model with a byte-level BPE tokenizer trained offline.

Users train Qwen2/Llama-family models whose tokenizers are byte-level BPE; the character-level
tiny model (tiny.py) hides what those do: tokens of several characters, byte symbols ('Ġ' for a
space, three symbols for a unicode minus), digits one per token (Qwen2's pre-tokenizer), markup
as special tokens, pad == eos in base models. ``build_tiny_bpe(path)`` trains a BPE (HF
``tokenizers``: NFC, Qwen2's split regex + ``ByteLevel``, ``ByteLevel`` decoder) on a small
seeded corpus of task-like text and ChatML markup, and writes it with a random-init model as an
ordinary Hugging Face directory (``AutoModelForCausalLM`` / ``AutoTokenizer``), like a Qwen2.5
checkpoint: ``chat_template=True`` is an instruct model (ChatML template, eos ``<|im_end|>``,
pad ``<|endoftext|>``), ``False`` a base model (no template, pad = eos = ``<|endoftext|>``).
``arch="llama"`` writes a Llama config (no q/k/v biases) and a generic ``tokenizer.json``
tokenizer instead of ``Qwen2Tokenizer``. Same arguments, same files (training is deterministic).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

PAD = EOT = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL = [EOT, IM_START, IM_END]
# Qwen2's pre-tokenizer regex (transformers' tokenization_qwen2.py): digits split one by one
SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
         r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
SYSTEM = "You are a helpful assistant."
# Qwen2.5's ChatML template without tools: a default system turn when none is given
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
PHRASES = [
    "Let me think step by step.", "The answer is", "Solve the problem and put the final answer in "
    "<answer></answer>.", "Compute the sum.", "What is the value of the last variable?",
    "Using the numbers, make the target with + - * / ( ), each number once.", "so the result is",
    "First, add the numbers. Then check the sign.", "Therefore the final answer is",
]


def corpus(seed: int = 0, n: int = 200) -> list[str]:
    """Task-like training text: arithmetic chains, LEGO chains, countdown questions, answers in
    ``<answer>`` tags with ``<think>`` reasoning, English phrases, ChatML-rendered turns."""
    rng = random.Random(seed)
    out = list(PHRASES)
    for _ in range(n):
        terms = [rng.randint(0, 99) for _ in range(rng.randint(2, 4))]
        q = "+".join(map(str, terms)) + "="
        names = rng.sample("abcdefghijklmnopqrstuvwxyz", rng.randint(2, 5))
        clauses = [f"{names[0]}={rng.choice('+-')}1"] + [f"{b}={rng.choice('+-')}{a}" for a, b in zip(names, names[1:])]
        lego = ";".join(rng.sample(clauses, len(clauses))) + f";?{names[-1]}"
        nums = [rng.randint(1, 20) for _ in range(3)]
        count = f"Using {' '.join(map(str, nums))} make {sum(nums)} with + - * / ( ), each number once."
        answer = f"<think>{rng.choice(PHRASES)} {' + '.join(map(str, terms))} = {sum(terms)}</think>" \
                 f"<answer>{sum(terms)}</answer>"
        question = rng.choice([q, lego, count])
        out += [q, lego, count, answer, f"<answer>{rng.choice(['+1', '-1'])}</answer>",
                f"{IM_START}system\n{SYSTEM}{IM_END}\n{IM_START}user\n{question}{IM_END}\n"
                f"{IM_START}assistant\n{answer}{IM_END}\n"]
    return out


def _backend():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(vocab_size: int = 384, seed: int = 0):
    """A ``tokenizers.Tokenizer`` (byte-level BPE, ``SPECIAL`` at ids 0..2, the 256 byte symbols,
    then merges) trained on ``corpus(seed)``; deterministic (ties in pair counts are broken by
    the pair's ids, which follow the sorted byte alphabet)."""
    from tokenizers import pre_tokenizers, trainers

    tok = _backend()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed), trainer)
    return tok


def vocab_and_merges(tok) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.to_str())["model"]
    return dict(model["vocab"]), [tuple(m) for m in model["merges"]]


def build_tokenizer(chat_template: bool = True, arch: str = "qwen2", vocab_size: int = 384, seed: int = 0):
    """The transformers tokenizer: ``Qwen2Tokenizer`` for qwen2 (as Qwen checkpoints name it),
    the generic ``tokenizer.json`` class for llama; ChatML template and eos ``<|im_end|>`` when
    ``chat_template``, else none and eos = pad = ``<|endoftext|>``."""
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    raw = train_bpe(vocab_size, seed)
    eos = IM_END if chat_template else EOT
    kw = dict(eos_token=eos, pad_token=PAD, unk_token=None, bos_token=None,
              additional_special_tokens=[IM_START, IM_END])
    if arch == "qwen2":
        vocab, merges = vocab_and_merges(raw)
        tok = Qwen2Tokenizer(vocab=vocab, merges=merges, **kw)
    else:
        tok = PreTrainedTokenizerFast(tokenizer_object=raw, **kw)
    if chat_template:
        tok.chat_template = CHATML
    tok.padding_side = "left"
    return tok


def build_tiny_bpe(path: str | Path, seed: int = 0, chat_template: bool = True, arch: str = "qwen2",
                   hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                   vocab_size: int = 384) -> Path:
    """Write a random-init tiny ``arch`` model (grouped-query attention, tied embeddings, Qwen2.5's
    RoPE base) and its BPE tokenizer to ``path``; ``seed`` fixes the corpus and the weights."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    if arch not in ("qwen2", "llama"):
        raise ValueError(f"arch must be 'qwen2' or 'llama', got {arch!r}")
    tok = build_tokenizer(chat_template, arch, vocab_size, seed)
    eot, eos = tok.convert_tokens_to_ids(EOT), tok.eos_token_id
    cls = Qwen2Config if arch == "qwen2" else LlamaConfig
    cfg = cls(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
              num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=1024,
              tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1e6, bos_token_id=eot, eos_token_id=eos,
              pad_token_id=None)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(cfg)
    finally:
        torch.random.set_rng_state(state)
    # Qwen2.5-Instruct stops at <|im_end|> or <|endoftext|>; the base model at <|endoftext|>
    model.generation_config = GenerationConfig(bos_token_id=eot, pad_token_id=eot,
                                               eos_token_id=[eos, eot] if eos != eot else eot)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
