"""Fixed-batch equivalence: groupo's loss and gradients vs TRL GRPOTrainer's compute_loss.

Run with the bench virtualenv (it needs trl and imports groupo from this checkout):

    .venv-bench/bin/python bench/equivalence.py [--json]

One model directory (the bench's 1M model), one fixed batch: 4 prompts of different
lengths (left padding) x 4 completions of different lengths (some end in EOS, some are
cut at the limit), fixed rewards (one group with all-equal rewards: zero advantages).
The policy weights get the same seeded perturbation on both sides, so the policy differs
from the reference and the KL term (beta 0.04) has a non-zero value and gradient.

* groupo: the training loop's own step update (``groupo.train.update.update``) on that batch, with an
  optimizer whose step does nothing and no gradient clipping, so the loss and the
  gradients it leaves in ``.grad`` are exactly what the loop would apply; reference
  model loaded as the loop does when beta > 0.
* TRL: ``GRPOTrainer._generate_and_score_completions`` with ``_generate_single_turn``
  replaced by the fixed completions and a reward function returning the fixed rewards
  (so TRL computes its own advantages and reference log-probs), then
  ``compute_loss`` and ``backward``.

TRL runs with use_bias_correction_kl=False (as in the bench): its 1.16 default (True)
multiplies the k3 KL by the importance ratio, whose value is 1 on-policy but whose gradient
is not zero, so the KL gradient is a different estimator (DeepSeek-V3.2's) from groupo's k3;
one extra, informative row shows that difference.

Pairs compared for beta 0 and 0.04: groupo aggregation token_mean vs TRL loss_type
'dapo' and 'bnpo', seq_mean_token_mean vs 'grpo'. Pass: |loss difference| and the largest
absolute gradient difference over all parameters both <= 1e-5. Exit code 1 on a fail.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
for k, v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "CUDA_VISIBLE_DEVICES": ""}.items():
    os.environ.setdefault(k, v)

PAIRS = [("token_mean", "dapo"), ("token_mean", "bnpo"), ("seq_mean_token_mean", "grpo")]
BETAS = [0.0, 0.04]
TOL = 1e-5
PROMPTS = [("3+4=", "7"), ("12+34=", "46"), ("7+49=", "56"), ("40+2=", "42")]
G, MAX_NEW = 4, 12
REWARDS = [1.0, 0.0, 0.5, 0.1,   0.1, 0.1, 0.1, 0.1,   0.0, 1.0, 0.0, 0.5,   0.5, 0.1, 0.0, 1.0]


def fixed_batch(tok):
    """Completion token lists (EOS included where the row ends) and their texts."""
    import torch

    g = torch.Generator().manual_seed(7)
    chars = [tok.convert_tokens_to_ids(c) for c in "0123456789+= abc"]
    lengths = [3, 12, 5, 12, 1, 7, 12, 9, 4, 12, 2, 6, 11, 12, 8, 3]
    rows = []
    for n in lengths:
        ids = [chars[int(i)] for i in torch.randint(len(chars), (n,), generator=g)]
        if n < MAX_NEW:
            ids[-1] = tok.eos_token_id            # ended by EOS; length-12 rows are cut at the limit
        rows.append(ids)
    return rows


def perturb(model, scale: float = 0.02) -> None:
    """The same seeded change to every policy weight on both sides, so that policy and
    reference differ and the KL term has a value and a gradient (at init both are equal:
    k3 and its gradient are then exactly 0 and beta would not be tested)."""
    import torch

    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(scale * torch.randn(p.shape, generator=g))


def groupo_side(model_dir: str, beta: float, aggregation: str, rows, tok):
    import torch

    from groupo.config import load_config
    from groupo.model.load import eos_ids, load_model
    from groupo.model.policy import Policy
    from groupo.rollout.base import Rollout
    from groupo.train.collect import Collected
    from groupo.train.score import score
    from groupo.train.setup import Run
    from groupo.train.update import optimise, prepare
    from groupo.types import Batch, Item
    from worker_groupo import overrides

    cfg = load_config("grpo", overrides(model_dir, beta, 1, torch.get_num_threads(), len(PROMPTS), G, MAX_NEW, 1e-4)
                      + [f"aggregation.name={aggregation}", "train.grad_clip=0"])
    run = Run(cfg, Path(tempfile.mkdtemp()))
    run.tokenizer = tok
    run.policy = Policy(load_model(model_dir, "float32", "cpu").train(), cfg.forward)
    perturb(run.model)
    run.eos_ids = eos_ids(tok, run.model)
    if beta:
        run.ref = Policy(load_model(model_dir, "float32", "cpu").eval().requires_grad_(False), cfg.forward)
    enc = tok([p for p, _ in PROMPTS], return_tensors="pt", padding=True, add_special_tokens=False)
    group = torch.arange(len(PROMPTS)).repeat_interleave(G)
    T = max(len(r) for r in rows)
    comp = torch.full((len(rows), T), tok.pad_token_id)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        comp[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    truncated = torch.tensor([r[-1] != tok.eos_token_id for r in rows])
    texts = tok.batch_decode(rows, skip_special_tokens=True)
    roll = Rollout(enc["input_ids"][group], enc["attention_mask"][group], comp, mask, truncated, group, texts)
    items = [Item(p, a, "terms=2", "number") for p, a in PROMPTS]
    rewards = torch.tensor(REWARDS)
    batch = Batch(rewards=rewards, group=group, reward_components=rewards[:, None], reward_weights=torch.ones(1),
                  reward_names=("python",), correct=(rewards >= 1.0).float(), lengths=mask.sum(1),
                  truncated=truncated, max_length=MAX_NEW, completion_mask=mask)
    col = Collected(batch, roll, [items[i] for i in group.tolist()], {}, items, [], None, None)

    class NoStep:              # the weights are not changed; the gradients are copied when the step is taken
        grads: dict = {}

        def zero_grad(self, set_to_none=True):
            for p in run.model.parameters():
                p.grad = None

        def step(self):
            self.grads = {n: p.grad.detach().clone() for n, p in run.model.named_parameters() if p.grad is not None}

    class NoSchedule:
        def step(self):
            pass

    opt = NoStep()
    run.opt, run.sched = opt, NoSchedule()
    data = prepare(run, col)
    scored = score(col.batch, roll.completion_mask, cfg.components, MAX_NEW, labels=[it.group for it in col.items])
    m = optimise(run, data, scored, step=1)
    run.hold.release(raise_pending=False)      # the loop would after logging the step (train/interrupt.py)
    return m["loss"], opt.grads


def trl_side(model_dir: str, beta: float, loss_type: str, rows, tok, **extra):
    from datasets import Dataset
    from trl import GRPOTrainer

    from worker_trl import grpo_config

    def fixed_reward(completions, row, **kw):
        return [REWARDS[i] for i in row]

    class Fixed(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, *a, **kw):
            return [list(r) for r in rows], None

    data = Dataset.from_dict({"prompt": [p for p, _ in PROMPTS], "answer": [a for _, a in PROMPTS]})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = grpo_config(tmp, beta, 1, len(PROMPTS), G, MAX_NEW, 1e-4, loss_type=loss_type, **extra)
        tr = Fixed(model=model_dir, reward_funcs=fixed_reward, args=cfg, train_dataset=data, processing_class=tok)
        tr.current_gradient_accumulation_steps = 1          # set by Trainer.train(); one window here
        tr.model.train()
        perturb(tr.model)
        inputs = [{"prompt": p, "answer": a, "row": j * G + k} for j, (p, a) in enumerate(PROMPTS) for k in range(G)]
        batch = tr._generate_and_score_completions(inputs)
        tr.model.zero_grad(set_to_none=True)
        loss = tr.compute_loss(tr.model, batch)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def compare(model_dir: str) -> list[dict]:
    from groupo.model.load import load_tokenizer

    tok = load_tokenizer(model_dir)
    rows = fixed_batch(tok)
    out = []
    cases = [(b, agg, lt, {}) for b in BETAS for agg, lt in PAIRS]
    cases.append((0.04, "token_mean", "dapo", {"use_bias_correction_kl": True}))   # TRL's own default: informative
    for beta, agg, lt, extra in cases:
        lg, gg = groupo_side(model_dir, beta, agg, rows, tok)
        lt_, gt = trl_side(model_dir, beta, lt, rows, tok, **extra)
        names = sorted(set(gg) | set(gt))
        missing = [n for n in names if n not in gg or n not in gt]
        gdiff = max(((gg[n] - gt[n]).abs().max().item() for n in names if n in gg and n in gt), default=0.0)
        gmax = max((gt[n].abs().max().item() for n in gt), default=0.0)
        ok = abs(lg - lt_) <= TOL and gdiff <= TOL and not missing
        out.append({"beta": beta, "groupo_aggregation": agg, "trl_loss_type": lt,
                    "trl_use_bias_correction_kl": extra.get("use_bias_correction_kl", False),
                    "informative": bool(extra), "loss_groupo": lg,
                    "loss_trl": lt_, "loss_abs_diff": abs(lg - lt_), "grad_max_abs_diff": gdiff,
                    "grad_max_abs": gmax, "params_compared": len(names) - len(missing),
                    "params_missing": missing, "pass": ok})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one RESULT_JSON line too")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    from common import build_model

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        res = compare(str(build_model(Path(tmp) / "m", "1M")))
    print(f"{'beta':>5} {'groupo aggregation':<20} {'TRL loss_type':<24} {'loss groupo':>12} {'loss TRL':>12} "
          f"{'|dloss|':>9} {'max|dgrad|':>10} {'max|grad|':>9}")
    for r in res:
        lt = r["trl_loss_type"] + (" bias_corr_kl=True" if r["trl_use_bias_correction_kl"] else "")
        verdict = ("differs (TRL default KL gradient, not groupo's k3; not a target)" if r["informative"]
                   else "pass" if r["pass"] else "FAIL")
        print(f"{r['beta']:>5g} {r['groupo_aggregation']:<20} {lt:<24} {r['loss_groupo']:>12.8f} "
              f"{r['loss_trl']:>12.8f} {r['loss_abs_diff']:>9.2e} {r['grad_max_abs_diff']:>10.2e} "
              f"{r['grad_max_abs']:>9.2e} {verdict}")
    if args.json:
        print("RESULT_JSON " + json.dumps(res), flush=True)
    return 0 if all(r["pass"] for r in res if not r["informative"]) else 1


if __name__ == "__main__":
    sys.exit(main())
