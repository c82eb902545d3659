"""Features as instruments on prompt pairs: dictionaries' latents patched, steered and attributed.

interventions.py  `FeatureSteer` (add or clamp a latent's decoder direction, in `generate` and on the
                  bridge) and `LatentPatch` (which latents, where)
patching.py       `patch_latents`: exact patching of chosen latents from the source run
"""
