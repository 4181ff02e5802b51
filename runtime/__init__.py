"""The reference runtime: onnxruntime + numpy + tokenizers + soundfile. Never imports torch."""
