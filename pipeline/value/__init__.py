"""Customer and channel value: pure analysis functions, no database access.

* ``clv``: probabilistic customer-lifetime-value models on numpy arrays: the BG/NBD model of repeat
  purchases, the Gamma-Gamma model of spend per purchase, and the discounted CLV that combines them.
* ``attribution``: channel attribution (heuristic, Markov-chain removal effect, Shapley).
* ``markov``: absorbing Markov chains on the aggregated transition graph, and what-if projections.
"""
