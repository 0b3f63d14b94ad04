"""Policy objectives (axis ``objective``): the per-token surrogate loss [N, T] (the negated
objective) and per-token metrics; the aggregation component turns it into one scalar.

* ``ppo``: PPO's clipped surrogate (clip-higher, dual clip) and plain REINFORCE
* ``gspo``: GSPO's sequence-level ratio and GSPO-token
* ``disco``: DisCO, a full-batch objective (``batch_loss``)
"""
