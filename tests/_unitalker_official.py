"""A transcription of the released UniTalker forward and training loss (X-niper/UniTalker at 2148113:
models/unitalker.py, unitalker_decoder.py, model_utils.py, pca.py, wavlm.py, main/train_eval_loop.py),
written for the tests in our words: batch one clip, as the release trains; module and buffer names
are the release's, so an official state dict loads into it with strict=True. Only the parts the
D0-D7 vertex heads use (TCN decoder, headlayer 1, interpolate_pos 1)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2FeatureExtractor


class ConvNormRelu(nn.Module):  # 1-D, residual, layer norm, kernel 3, stride 1, padding 1
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.residual_layer = (nn.Identity() if c_in == c_out
                               else nn.Sequential(nn.Conv1d(c_in, c_out, 3, 1, 1)))
        self.conv = nn.Conv1d(c_in, c_out, 3, 1, 1)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, x):
        out = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        out = out + self.residual_layer(x)
        return torch.relu(out)


class SeqTranslator1D(nn.Module):
    def __init__(self, c_in: int, c_out: int, layers: int = 3):
        super().__init__()
        self.conv_layers = nn.Sequential(ConvNormRelu(c_in, c_out),
                                         *[ConvNormRelu(c_out, c_out) for _ in range(layers - 1)])

    def forward(self, x):
        return self.conv_layers(x)


class TCN(nn.Module):
    def __init__(self, c_in: int, c_out: int, layers: int):
        super().__init__()
        self.first_net = SeqTranslator1D(c_in, c_out, layers)
        self.dropout = nn.Dropout(0.1)

    def forward(self, spectrogram, style):
        spectrogram = self.dropout(spectrogram)
        style = style.unsqueeze(2).repeat(1, 1, spectrogram.shape[2])
        return self.first_net(torch.cat([spectrogram, style], dim=1))


class DecoderTCN(nn.Module):
    def __init__(self, n_identities: int, enc_dim: int, d: int, layers: int, style_dim: int = 64):
        super().__init__()
        self.learnable_style_emb = nn.Embedding(n_identities, style_dim)
        self.audio_feature_map = nn.Linear(enc_dim, d)
        self.tcn = TCN(d + style_dim, d, layers)

    def forward(self, hidden, style_idx):
        if style_idx is None:
            style = self.learnable_style_emb.weight[-1].unsqueeze(0).repeat(len(hidden), 1)
        else:
            style = self.learnable_style_emb(style_idx)
        feature = self.audio_feature_map(hidden).transpose(1, 2)
        return self.tcn(feature, style).transpose(1, 2)


class PCALayer(nn.Module):
    def __init__(self, k: int, dim: int):
        super().__init__()
        for name, shape in (("feat_to_data", (k, dim)), ("data_to_feat", (dim, k)), ("data_bias", (dim,)),
                            ("feat_mean", (k,)), ("feat_std", (k,))):
            self.register_buffer(name, torch.zeros(shape))

    def encode(self, x, pca_dim):
        return (x - self.data_bias) @ self.data_to_feat[:, :pca_dim]

    def decode(self, feat, pca_dim):
        return feat[..., :pca_dim] @ self.feat_to_data[:pca_dim] + self.data_bias


class OfficialUniTalker(nn.Module):
    def __init__(self, encoder: nn.Module, n_identities: int, d: int, layers: int, style_dim: int,
                 heads: dict[str, tuple[int, int]], pca_dim: int = 512):
        """``heads``: annotation type -> (head width, data dim); every head here is a PCA head."""
        super().__init__()
        self.audio_encoder = encoder
        self.decoder = DecoderTCN(n_identities, encoder.config.hidden_size, d, layers, style_dim)
        self.pca_layer_dict = nn.ModuleDict({a: PCALayer(k, dim) for a, (k, dim) in heads.items()})
        self.out_head_dict = nn.ModuleDict({a: nn.Linear(d, k) for a, (k, _) in heads.items()})
        self.pca_dim = pca_dim

    def encode_audio(self, audio, frame_num):
        feats = self.audio_encoder.feature_extractor(audio).transpose(1, 2)
        hidden, _ = self.audio_encoder.feature_projection(feats)
        hidden = self.audio_encoder.encoder(hidden)[0]
        return F.interpolate(hidden.transpose(1, 2), size=frame_num, align_corners=True,
                             mode="linear").transpose(1, 2)

    def forward(self, audio, template, face_motion, style_idx, annot_type, fps=None):
        frame_num = face_motion.shape[1] if face_motion is not None else round(audio.shape[-1] / 16000 * fps)
        out = self.decoder(self.encode_audio(audio, frame_num), style_idx)
        out_pca = self.out_head_dict[annot_type](out)
        pca = self.pca_layer_dict[annot_type]
        out_motion = pca.decode(out_pca, self.pca_dim) + template
        gt_pca = pca.encode(face_motion - template, self.pca_dim) if face_motion is not None else None
        return out_motion, out_pca, gt_pca

    def train_loss(self, audio, template, data, identity, annot_type, pca_weight=0.01):
        """train_epoch's loss with the identity given (the pivot draw is the caller's)."""
        out_motion, out_pca, gt_pca = self(audio, template, data, identity, annot_type)
        rec = F.mse_loss(out_motion, data)
        pca = F.mse_loss(out_pca, gt_pca)
        return rec + pca_weight * pca, rec, pca


def processor_input(audio: np.ndarray) -> torch.Tensor:
    """main/demo.py's input: Wav2Vec2FeatureExtractor's zero-mean unit-variance values, (1, S)."""
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    return torch.from_numpy(np.asarray(fe(audio, sampling_rate=16000).input_values[0], np.float32))[None]
