"""voxport: codec-language-model TTS from PyTorch to ONNX, with proven parity."""

__version__ = "0.1.0"
