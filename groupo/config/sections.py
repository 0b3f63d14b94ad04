"""The plain (non-component) sections of a run configuration: model, generation, train,
eval, checkpoint, log and warmstart. Each field is a key with its default and a one-line
comment; ``groupo.config`` validates recipes against these dataclasses (``Literal`` fields
against their choices) and checks their values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelCfg:
    path: str = ""                 # a local Hugging Face model directory or a Hub model id
    tokenizer: str = ""            # tokenizer directory or Hub id (empty: the model's own)
    tiny: bool = False             # build the offline tiny model + tokenizer into `path` if missing
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"   # weights' dtype (bf16/fp16 for GPUs)
    device: Literal["auto", "cpu", "cuda"] = "auto"   # auto: cuda when available
    threads: int = 0               # torch CPU threads; 0 = one per available core (max 8)
    lora_r: int = 0                # LoRA rank (0 = full fine-tuning); needs peft (groupo[lora])
    lora_alpha: float = 16.0        # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0       # dropout on the LoRA branch
    lora_targets: str = "all-linear"   # or comma-separated module names, e.g. q_proj,v_proj
    gradient_checkpointing: bool = False   # recompute activations in backward (less memory, ~30% slower)
    autocast: Literal["none", "bfloat16"] = "none"   # mixed precision (forward, backward, own sampler)
    cpu_gemm: Literal["auto", "onednn", "torch"] = "auto"   # float32 CPU products through oneDNN where faster (model/gemm.py)


@dataclass
class GenerationCfg:
    group_size: int = 8            # G, completions per prompt
    prompts_per_step: int = 16     # P, prompts per optimizer step (before filtering)
    max_new_tokens: int = 32       # L_max
    temperature: float = 1.0       # sampling temperature (0 = greedy: a group's completions are identical)
    top_p: float = 1.0             # nucleus sampling (1 = off)
    top_k: int = 0                 # 0 = off
    seed_per_prompt: bool = False  # seed each prompt's sampling from (seed, step, index); forced on with >1 process


@dataclass
class TrainCfg:
    steps: int = 100               # optimizer steps (one generated batch each; x num_iterations updates)
    lr: float = 1e-6               # AdamW learning rate
    weight_decay: float = 0.0      # AdamW decoupled weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])   # AdamW (beta1, beta2)
    adam_eps: float = 1e-8         # AdamW epsilon (TRL's adam_epsilon)
    grad_clip: float = 1.0         # 0 = off
    schedule: Literal["constant", "linear", "cosine"] = "constant"   # learning-rate schedule after warmup
    warmup_steps: int = 0          # linear warmup of the learning rate over these steps
    micro_batches: int = 1         # the step's rows are split into this many forward/backward passes
    num_iterations: int = 1        # mu: optimizer updates per generated batch (old log-probs stored)
    max_nonfinite: int = 3         # consecutive non-finite losses/gradients tolerated (step skipped)
    skip_zero_advantage: bool = True   # rows with advantage 0 (no KL) give no gradient: skip their forward/backward
    top_entropy_quantile: float = 1.0  # < 1: policy loss only on the top-q entropy tokens of each micro-batch (arXiv 2506.01939)
    parallel: Literal["ddp", "fsdp"] = "ddp"   # several processes: full model per process (ddp) or sharded (fsdp, FSDP2)
    pg_timeout: float = 600.0      # seconds a process waits for the others in a collective before it stops (torchrun)


@dataclass
class EvalCfg:
    n: int = 0                     # eval items (0 = all of the task's eval split)
    samples: int = 1               # completions per item (pass@k / maj@k need > 1)
    temperature: float = 0.0       # 0 = greedy
    ks: list[int] = field(default_factory=lambda: [1])   # k values of pass@k / maj@k (each <= samples)
    before: bool = True            # evaluate before training
    after: bool = True             # evaluate after training
    every: int = 0                 # also evaluate every k steps (0 = off)
    batch_size: int = 64           # completions generated per evaluation batch


@dataclass
class CheckpointCfg:
    every: int = 50                # steps between checkpoints (0 = only at the end)
    keep: int = 2                  # most recent checkpoints kept


@dataclass
class LogCfg:
    tensorboard: bool = True       # TensorBoard event files in RUN/tb (also written when report_to lists tensorboard)
    progress: bool = True          # rich progress bar
    line_every: int = 10           # print a short line every k steps (0 = off)
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow"]] = field(default_factory=list)   # tracking services that also get each step's metrics (groupo[wandb] etc.)
    project: str = "groupo"        # wandb/trackio project, mlflow experiment of report_to (the run is called `name`)
    warn_every: int = 10           # a step that trains no row prints its reason at most once every k steps
    completions_every: int = 1     # sample completions into RUN/completions.jsonl at step 1 and every k steps (0 = off)
    completions_per_step: int = 8  # rows sampled per logged step: the step's first groups, whole (filtered-out rows included)
    completions_max_chars: int = 2000   # characters kept of each prompt (its end) and completion (its start); 0 = all


@dataclass
class WarmstartCfg:
    """Supervised warm start before RL (the demo uses it so a random model learns the
    answer format). steps=0 disables it."""

    steps: int = 0                 # supervised steps before RL (0 = no warm start)
    lr: float = 1e-3               # AdamW learning rate of the warm start
    batch_size: int = 32           # items per supervised step
    levels: list[int] = field(default_factory=list)   # task levels used for SFT (empty = task's own)
    target: str = "<answer>{answer}</answer>"         # completion taught: {answer} and task columns, e.g. {trace}
    stop_at_accuracy: float = 0.0  # stop early once dev accuracy reaches this (0 = never)
    check_every: int = 50          # steps between dev-accuracy checks (with stop_at_accuracy)
