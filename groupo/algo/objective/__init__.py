"""Policy objectives (axis ``objective``): the per-token surrogate loss [N, T] (the negated
objective) and per-token metrics; the aggregation component turns it into one scalar.

* ``ppo``: PPO's clipped surrogate (clip-higher, dual clip) and plain REINFORCE
* ``gspo``: GSPO's sequence-level ratio and GSPO-token
* ``disco``: DisCO, a full-batch objective (``batch_loss``)
* ``cispo``: CISPO's clipped stop-gradient importance weight (MiniMax-M1)
* ``sapo``: SAPO's sigmoid gate instead of the hard clip
* ``gmpo``: GMPO's geometric mean of log-space-clipped token ratios
* ``cov``: Clip-Cov and KL-Cov, entropy control through high-covariance tokens
"""
