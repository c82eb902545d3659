"""Attribution graphs (Ameisen et al. 2025, "Circuit Tracing"; the circuit-tracer library) on Phi.

replacement.py    the local replacement model of one prompt: per-layer transcoders in place of the MLPs,
                  attention patterns and LayerNorm scales frozen, an error node per (layer, position)
attribution.py    `attribution_graph`: every direct linear effect between features, errors, tokens and
                  the top logits, from batched backward passes
pruning.py        influence, node / edge pruning and the replacement and completeness scores
interventions.py  a graph checked by intervention: its predicted logit changes against the replacement
                  model's and the real model's (transcoders substituted)
graph_json.py     the graph in circuit-tracer's JSON layout (its frontend opens ours), both ways
promoted.py       each feature node's card: the tokens its decoder row promotes and suppresses
"""
