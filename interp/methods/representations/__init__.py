"""Representations: what a hook point's activations encode, read out and intervened on.

probes.py  `probe_layers`: a logistic-regression probe per hook at one position, held-out accuracy on
           prompts it never saw, and a shuffled-label control per hook
sparse_probes.py  `sparse_probe`: accuracy vs k of probes on the top-k units (neurons, dictionary
           latents) ranked on the training prompts, against random k-unit subsets and shuffled labels
das.py     `fit_das`: distributed alignment search for a rank-r subspace carrying a variable,
           against a difference-of-means and a random subspace of the same rank; `das_steer`: the
           learned subspace as a `Steer` vector, between two classes' mean coordinates
"""
