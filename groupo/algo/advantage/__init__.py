"""Advantage estimators (axis ``advantage``), one file per method family:

* ``classic``: GRPO (group z-score, with TRL's batch/no scaling), Dr. GRPO, RLOO
* ``reinforce_pp``: REINFORCE++ (batch-whitened, group-mean baseline)
* ``mc_grpo``: MC-GRPO's median baseline with a pivot row
* ``ngrpo``: NGRPO's virtual maximum-reward sample
* ``gdpo``: GDPO's per-component group normalisation
* ``dgpo``: DGPO/MathForge's difficulty-balanced advantage (DGAE)
* ``agrae``: A-GRAE's asymmetric advantage
* ``vgpo``: VGPO's value-anchored dual advantage
* ``maxmin``: MaxMin-RLHF's worst-off reward group
* ``opo``: OPO's length-weighted optimal baseline
* ``gpg``: GPG's mean baseline with the valid-sample correction B/(B-M)
* ``passk``: pass@k advantages: verl's best-of-group ``grpo_passk`` and the analytic ``passk``
* ``remax``: ReMax's greedy-completion baseline
* ``gae``: PPO's per-token GAE from a critic's values
* ``otb``: the Optimal Token Baseline (per token, weighted by cumulative realized energy)
* ``common``: the result record and shared helpers

Each is called with a ``Batch`` and returns an ``AdvantageResult`` (advantages [N], or [N, T]
for the per-token ``gae`` and ``otb``, keep [N], weights [N]); groups are ragged (``groupo.ops``).
"""
