"""Model families. Each module registers itself with exporter.spec.register on import."""

from voxport.exporter.families import csm, orpheus, qwen3_tts  # noqa: F401
