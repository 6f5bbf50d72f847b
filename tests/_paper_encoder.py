"""A one-layer random speech encoder of the paper width (768), for building paper-preset models without
pretrained weights: the checkpoint mappings do not depend on depth."""

ENCODER = dict(
    hidden_size=768,
    num_hidden_layers=1,
    num_attention_heads=12,
    intermediate_size=32,
    conv_dim=[8] * 7,
    num_conv_pos_embeddings=4,
    num_conv_pos_embedding_groups=16,
)
