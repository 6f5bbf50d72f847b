"""The SynthTalk speech encoder: the embedded stand-in for wav2vec2-960h / HuBERT.

A mel encoder pretrained once on a phonetic objective (frame-wise phoneme classification at 50 Hz) on
SynthTalk speakers disjoint from every benchmark split, cached under TALKBENCH_HOME by the hash of its
data and code, logged as its own MLflow run. Methods load it with ``audio.kind: synthtalk``.
Modules: data (speakers, clips, frame labels), config (settings, cache key), encoder (the pretraining
model, checkpoint files; no tracking), train (the pretraining itself), cache (the cache and the MLflow
run). Methods load the result through talkbench.audio.synthtalk; this package imports no method.
"""
