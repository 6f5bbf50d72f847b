"""The speech layer every method and the encoder pretraining stand on (it imports neither).

Modules, one job each: ``config`` (which encoder, how), ``signal`` (loading, resampling,
normalisation, frame alignment at any fps, log-mel), ``feature_cache`` (the frozen prefix's
features per clip, shared on disk by every run that uses the same frozen weights), ``base`` (the
encoder contract), one wrapper per family (``mel``, ``wav2vec2``, ``hubert``, ``wavlm``,
``synthtalk``; the Hugging Face ones share ``huggingface``), and ``build`` (config -> encoder).
Nothing is imported here, so reading a WAV does not load transformers.
"""
