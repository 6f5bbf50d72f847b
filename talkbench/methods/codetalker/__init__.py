"""CodeTalker: discrete motion prior (VQ-VAE) and speech-driven code prediction."""

from talkbench.methods.codetalker.config import CodeTalkerConfig
from talkbench.methods.codetalker.model import CodeTalker
from talkbench.methods.codetalker.predictor import Predictor
from talkbench.methods.codetalker.quantizer import VectorQuantizer
from talkbench.methods.codetalker.vqvae import VQVAE, VQShape

__all__ = ["CodeTalker", "CodeTalkerConfig", "Predictor", "VQShape", "VQVAE", "VectorQuantizer"]
