"""The built-in architectures, one file each; importing this package registers them."""

from interp.dictionaries.architectures import batchtopk, jumprelu, relu, topk

__all__ = ["batchtopk", "jumprelu", "relu", "topk"]
