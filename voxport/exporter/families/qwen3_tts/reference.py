"""The reference implementation: the authors' modules from qwen-tts-hf (an optional, pinned extra),
imported and used through three contained shims so nothing leaks into the rest of the process.

1. qwen-tts-hf registers a global "default" RoPE initialiser in transformers' ROPE_INIT_FUNCTIONS at
   import. transformers' own Mimi then takes the wrong branch ('MimiEncoderConfig' object has no
   attribute 'rope_theta'), so CSM would break in the same process. `reference()` adds the entry only
   while Qwen3-TTS modules are built or loaded (each RoPE module keeps its init function) and removes it.
2. Its 12 Hz codec's encoder subclasses transformers' MimiModel and then sets `self.upsample = None`,
   which transformers 5.23's split Mimi refuses (a read-only property): `encoder_without_decoder`
   builds the encoder with decoder_config=None instead.
3. It imports torchaudio and sox at load time, for its 25 Hz tokenizer only (no torchaudio wheel exists
   for torch 2.13): stand-in modules exist during the import and are removed after it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import types
from contextlib import contextmanager

from voxport.errors import CheckpointError

PACKAGE = "qwen-tts-hf==0.1.1.post1"
_STAND_INS = ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi", "sox")


def _stand_in(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def missing(attr):
        if attr.startswith("__"):  # probes such as inspect's hasattr(module, "__file__") expect AttributeError
            raise AttributeError(attr)
        raise ImportError(f"{name}.{attr}: not available (voxport loads only Qwen3-TTS's 12 Hz codec)")

    mod.__getattr__ = missing
    return mod


def _import():
    """Import qwen_tts once, with the stand-ins present only during the import."""
    if "qwen_tts" in sys.modules:
        return sys.modules["qwen_tts"]
    added = [n for n in _STAND_INS if n not in sys.modules]
    for n in added:
        sys.modules[n] = _stand_in(n)
    for n in added:  # `import a.b.c as x` reads the submodules as attributes of their parents
        parent, _, child = n.rpartition(".")
        if parent in added:
            setattr(sys.modules[parent], child, sys.modules[n])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a flash-attn banner on import
            import qwen_tts
    except ImportError as e:
        raise CheckpointError(f"Qwen3-TTS needs the optional reference package: pip install --no-deps "
                              f"{PACKAGE} einops librosa ({e})") from None
    finally:
        for n in added:
            sys.modules.pop(n, None)
    return qwen_tts


def _encoder_without_decoder(original):
    """The 12 Hz codec's encoder as transformers 5.23 can build it: a Mimi with no decoder half."""
    from transformers import MimiModel

    class Qwen3TTSTokenizerV2Encoder(MimiModel):
        def __init__(self, config):
            config = copy.deepcopy(config)
            config.decoder_config = None
            super().__init__(config)

    Qwen3TTSTokenizerV2Encoder.__module__ = original.__module__
    return Qwen3TTSTokenizerV2Encoder


@contextmanager
def reference():
    """`with reference() as qt:` qt.models / qt.codec / qt.compat: the package's modules, with the
    "default" RoPE initialiser registered only inside the block."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    had = "default" in ROPE_INIT_FUNCTIONS
    previous = ROPE_INIT_FUNCTIONS.get("default")
    qwen_tts = _import()
    from qwen_tts import _transformers_compat as compat
    from qwen_tts.core import models
    from qwen_tts.core.tokenizer_12hz import configuration_qwen3_tts_tokenizer_v2 as codec_config
    from qwen_tts.core.tokenizer_12hz import modeling_qwen3_tts_tokenizer_v2 as codec

    def default_rope(config, device=None, seq_len=None, layer_type=None):
        # transformers' own configs built inside the same model (the codec's Mimi encoder) keep rope_theta
        # in rope_parameters, where qwen-tts-hf's initialiser does not look; same formula either way
        if not hasattr(config, "rope_theta"):
            rp = config.rope_parameters
            config = types.SimpleNamespace(
                rope_theta=rp["rope_theta"], partial_rotary_factor=rp.get("partial_rotary_factor", 1.0),
                head_dim=getattr(config, "head_dim", None), hidden_size=config.hidden_size,
                num_attention_heads=config.num_attention_heads)
        return compat._default_rope_parameters(config, device, seq_len, layer_type)

    ROPE_INIT_FUNCTIONS["default"] = default_rope
    original_encoder = codec.Qwen3TTSTokenizerV2Encoder
    codec.Qwen3TTSTokenizerV2Encoder = _encoder_without_decoder(original_encoder)
    try:
        yield types.SimpleNamespace(package=qwen_tts, models=models, codec=codec, codec_config=codec_config,
                                    compat=compat)
    finally:
        codec.Qwen3TTSTokenizerV2Encoder = original_encoder
        if had:
            ROPE_INIT_FUNCTIONS["default"] = previous
        else:
            ROPE_INIT_FUNCTIONS.pop("default", None)
