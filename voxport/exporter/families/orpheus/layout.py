"""Orpheus's token layout: where text, control and audio ids sit in the Llama vocabulary.

canopylabs' checkpoints extend Llama 3's 128,256 ids with `<custom_token_N>` = 128,256 + N: N 0..9 are
controls (1 start of speech, 2 end of speech, 3 start of human, 4 end of human, 5 start of AI), and
from N = 10 on, 7 x 4,096 audio ids: in-frame position p (0..6) with code c is custom token
10 + p * 4096 + c. The seven positions of a frame feed SNAC's three levels [L0, L1, L2, L2, L1, L2, L2]
(one coarse code, two middle, four fine per 2,048-sample frame).

The layout is read from the checkpoint, not assumed: the first custom token's id comes from the
tokenizer, the codebook size from SNAC's config. A tiny preset shrinks both and keeps every rule.
"""

from __future__ import annotations

from dataclasses import dataclass

# SNAC level of each in-frame position (canopyai/Orpheus-TTS decoder.py's redistribution)
LEVELS = (0, 1, 2, 2, 1, 2, 2)
POSITIONS = len(LEVELS)
# controls, as offsets from the first custom token
START_OF_SPEECH, END_OF_SPEECH, START_OF_HUMAN, END_OF_HUMAN, START_OF_AI = 1, 2, 3, 4, 5
AUDIO_OFFSET = 10
# the finetuned model's voices (its model card; any name is passed through as text)
VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")


@dataclass(frozen=True)
class Layout:
    custom_base: int  # id of <custom_token_0> (128256 in the released tokenizer)
    codebook_size: int  # SNAC codes per level (4096)
    eot_id: int  # the tokenizer's <|eot_id|> (128009)

    @property
    def audio_start(self) -> int:
        return self.custom_base + AUDIO_OFFSET

    @property
    def stop_id(self) -> int:
        return self.custom_base + END_OF_SPEECH

    def audio_id(self, position: int, code: int) -> int:
        return self.audio_start + position * self.codebook_size + code

    def rows(self, position: int) -> tuple[int, int]:
        """The vocabulary rows [a, b) position `position` samples from (its 4,096 audio ids)."""
        a = self.audio_start + position * self.codebook_size
        return a, a + self.codebook_size

    @property
    def end(self) -> int:
        """One past the last audio id (the checkpoint's vocabulary may be larger: 156,940 > 156,938)."""
        return self.audio_start + POSITIONS * self.codebook_size

    def prompt_ids(self) -> tuple[list[int], list[int]]:
        """The ids around the tokenized "{voice}: {text}" (canopy's engine): start of human before it;
        end of turn, end of human, start of AI, start of speech after it."""
        b = self.custom_base
        return [b + START_OF_HUMAN], [self.eot_id, b + END_OF_HUMAN, b + START_OF_AI, b + START_OF_SPEECH]

    @classmethod
    def read(cls, tokenizer, codebook_size: int) -> "Layout":
        """From a `tokenizers.Tokenizer` (or anything with token_to_id) and SNAC's codebook size."""
        base, eot = tokenizer.token_to_id("<custom_token_0>"), tokenizer.token_to_id("<|eot_id|>")
        if base is None or eot is None:
            raise ValueError("its tokenizer has no <custom_token_0> or <|eot_id|> (not Orpheus's)")
        return cls(base, codebook_size, eot)
