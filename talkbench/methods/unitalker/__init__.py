"""UniTalker (ECCV 2024): one model for many datasets, one output head per dataset or annotation type.

Read in the release (X-niper/UniTalker at 2148113) where specs/unitalker.md is silent or differs:

- heads and PCA bases are keyed by annotation type, so D3/D4 (ARKit weights) and D6/D7 (in-house
  blendshapes) share a head: the D0-D7 files have six heads, three of them PCA heads of width 512;
- the identity table has the training subjects of D0-D7 (934) plus the pivot row (935), and a pivot
  row exists only when ``random_id_prob`` > 0 (talkbench always adds it: inference needs one);
- main/train.py saves the state dict without ``pca_layer_dict`` (the bases come from the data
  release's pca.npz at demo time); ``feat_mean`` / ``feat_std`` of a basis are never used;
- the blendshape weight 1e-4 multiplies the weight-space MSE; the vertex-space MSE through the
  blendshape basis weighs 1; ``rec_weight`` is not applied (it is 1.0);
- only a one-layer head is zero-initialised (``headlayer`` > 1 keeps the default initialisation);
- the TCN's dropout acts on the projected audio features, before the identity is concatenated;
- inference frames: round(samples / 16000 * fps) (main/demo.py); the transformer decoder cannot run
  without an identity (its pivot is passed explicitly here);
- the warm-up (``fix_encoder_first``) freezes the whole encoder for epoch 0 and builds a new Adam at
  epochs 0 and 1; validation uses the clips' own identities.
"""

from talkbench.methods.unitalker.model import UniTalker

__all__ = ["UniTalker"]
