"""Sparse dictionaries: SAEs, transcoders and skip transcoders; train, save, load, evaluate.

base.py           the one interface (`Dictionary`: encode / decode / forward) and its config
registry.py       architectures by name (`make_dictionary("topk", d_in=..., d_sae=..., k=...)`)
architectures/    one file per architecture: relu (ReLU + L1), topk (+ AuxK), batchtopk, jumprelu
training.py       `train_dictionary` from a tensor or an iterator of activation batches
streaming.py      activations computed on the fly through the model; several dictionaries per forward
formats/          SAELens's and eai-sparsify's file layouts, both ways
io.py             `save_dictionary` / `load_dictionary` (the layout is recognised from the files)
evaluation.py     L0, explained variance, cosine, dead / dense latents; CE loss recovered and KL
feature_stats.py  per-latent statistics over a corpus in one streaming pass (top contexts, histogram)
cards.py          feature cards: contexts, density, promoted / suppressed tokens, a transcoder's inputs
neuronpedia.py    cards in Neuronpedia's feature JSON, both ways
"""

from interp.dictionaries import architectures as architectures
from interp.dictionaries.base import Dictionary, DictionaryConfig
from interp.dictionaries.cards import FeatureCard, feature_cards
from interp.dictionaries.evaluation import DictionaryMetrics, evaluate_dictionary, evaluate_on_model
from interp.dictionaries.feature_stats import FeatureStats, feature_stats
from interp.dictionaries.io import load_dictionary, save_dictionary
from interp.dictionaries.registry import architectures as architecture_names
from interp.dictionaries.registry import make_config, make_dictionary, register_architecture
from interp.dictionaries.streaming import model_activations, train_from_model
from interp.dictionaries.training import TrainingConfig, train_dictionary

__all__ = [
    "Dictionary",
    "DictionaryConfig",
    "DictionaryMetrics",
    "FeatureCard",
    "FeatureStats",
    "architecture_names",
    "evaluate_dictionary",
    "evaluate_on_model",
    "feature_cards",
    "feature_stats",
    "model_activations",
    "train_from_model",
    "load_dictionary",
    "save_dictionary",
    "make_config",
    "make_dictionary",
    "register_architecture",
    "TrainingConfig",
    "train_dictionary",
]
