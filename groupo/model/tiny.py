"""A tiny causal LM and a character-level tokenizer, built offline.

The demo and the tests need a real Hugging Face model directory without any download:
``build_tiny(path)`` writes a Llama-style config with random weights (about 1M
parameters) and a ``tokenizers`` character-level tokenizer with single-token chat roles,
answer tags as single tokens, and a chat template, via ``save_pretrained``. The result
loads with plain ``AutoModelForCausalLM`` / ``AutoTokenizer``. A tiny Qwen2/Llama with a
byte-level BPE tokenizer, as real checkpoints have, is built by ``tiny_bpe.build_tiny_bpe``.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch

SPECIAL = ["<|pad|>", "<|endoftext|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|unk|>"]
TAGS = ["<answer>", "</answer>", "<think>", "</think>"]
# Roles are single special tokens. Spelled out character by character (ChatML's
# "<|im_start|>assistant"), their letters act as distractors for a character-level model
# that must look up variable names: LEGO warm start stayed at chance with ChatML markup
# and reached 100% in 500 steps without it (measured; see docs/demo.md).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer():
    """Character-level fast tokenizer (printable ASCII + newline), role tokens, chat template."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(SPECIAL + chars)}
    # BPE with no merges = one token per character; unknown characters map to <|unk|>.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|unk|>"))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>", bos_token=None,
        unk_token="<|unk|>", additional_special_tokens=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.add_tokens(TAGS)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def tiny_config(vocab_size: int, hidden: int = 128, layers: int = 4, heads: int = 4, max_pos: int = 1024,
                pad_id: int = 0, eos_id: int = 3):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_pos,
        tie_word_embeddings=True, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None,
        rms_norm_eps=1e-6, rope_theta=10000.0,
    )


def build_tiny(path: str | Path, seed: int = 0, hidden: int = 128, layers: int = 4, heads: int = 4,
               intermediate: int | None = None) -> Path:
    """Write a random-init tiny model + tokenizer to ``path`` (an HF model directory);
    ``intermediate`` is the MLP width (default 4 x hidden)."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    path = Path(path)
    tok = build_tokenizer()
    cfg = tiny_config(len(tok), hidden, layers, heads, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
    if intermediate is not None:
        cfg.intermediate_size = intermediate
    cpu_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(cfg)
    finally:
        torch.random.set_rng_state(cpu_state)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
