"""Reward shaping (axis ``shaping``): transforms of the step's rewards before the advantage.

* ``common``: the protocol's conventions, shared helpers, ``none``
* ``overlong``: DAPO's soft overlong punishment
* ``unlikeliness``: Rewarding the Unlikely (rank-based bonus for low-likelihood correct answers)
* ``gcpo``: GCPO's length-conditioned term
* ``condition``: GDPO's reward conditioning
* ``entropy_rank``: R³'s structural-entropy ranking reward for failed rows
"""
