"""The original CSM model, independent of transformers and of voxport's weight mapping: Sesame's
Model (models.py: a torchtune llama3_2 backbone and decoder with their token embedding and output
layers removed, text + 32 audio embeddings summed per frame, codebook0_head, a projection and
audio_head for the depth steps) and its frame-by-frame generation (generator.py), written here from
torchtune 0.6.1's components and loaded with the checkpoint's torchtune-named weights as they are.

Greedy: argmax where Sesame's generator samples. The prompt is built as Sesame's generator builds it:
per turn `bos + tokens("[speaker]text") + eos` in the text column."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# Sesame's and Marvis's flavours all pass these to torchtune's llama3_2
ROPE_BASE, SCALE_FACTOR = 500_000, 32


def _decoder(f: dict):
    from torchtune.models.llama3_2 import llama3_2

    d = llama3_2(vocab_size=1, num_layers=f["layers"], num_heads=f["heads"], num_kv_heads=f["kv_heads"],
                 embed_dim=f["embed_dim"], max_seq_len=f["max_seq_len"], intermediate_dim=f["intermediate"],
                 attn_dropout=0.0, norm_eps=1e-5, rope_base=ROPE_BASE, scale_factor=SCALE_FACTOR)
    d.tok_embeddings, d.output = nn.Identity(), nn.Identity()  # Sesame's _prepare_transformer
    return d


class OriginalCSM(nn.Module):
    def __init__(self, config: dict, flavors: dict):
        super().__init__()
        self.k, self.v = config["audio_num_codebooks"], config["audio_vocab_size"]
        b, d = flavors[config["backbone_flavor"]], flavors[config["decoder_flavor"]]
        self.backbone, self.decoder = _decoder(b), _decoder(d)
        self.text_embeddings = nn.Embedding(config["text_vocab_size"], b["embed_dim"])
        self.audio_embeddings = nn.Embedding(self.v * self.k, b["embed_dim"])
        self.projection = nn.Linear(b["embed_dim"], d["embed_dim"], bias=False)
        self.codebook0_head = nn.Linear(b["embed_dim"], self.v, bias=False)
        self.audio_head = nn.Parameter(torch.empty(self.k - 1, d["embed_dim"], self.v))

    @classmethod
    def from_dir(cls, path: Path, flavors: dict) -> "OriginalCSM":
        from safetensors.torch import load_file

        model = cls(json.loads((path / "config.json").read_text()), flavors)
        weights = {}
        for f in sorted(path.glob("*.safetensors")):
            weights.update(load_file(str(f)))
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
        return model.eval()

    def _embed(self, tokens, mask):
        """tokens, mask [b, s, K+1]: audio codes then the text id (Sesame's _embed_tokens)."""
        text = self.text_embeddings(tokens[:, :, -1]).unsqueeze(-2)
        offsets = self.v * torch.arange(self.k)
        audio = self.audio_embeddings(tokens[:, :, :-1] + offsets)
        return (torch.cat([audio, text], dim=-2) * mask.unsqueeze(-1)).sum(dim=2)

    @torch.no_grad()
    def generate(self, tokens, mask, frames: int) -> torch.Tensor:
        """Greedy codes [frames, K] after the prompt (tokens, mask [s, K+1])."""
        self.backbone.setup_caches(1, torch.float32)
        self.decoder.setup_caches(1, torch.float32, decoder_max_seq_len=self.k)
        bmask = torch.tril(torch.ones(self.backbone.max_seq_len, self.backbone.max_seq_len, dtype=torch.bool))
        dmask = torch.tril(torch.ones(self.k, self.k, dtype=torch.bool))
        tokens, mask = tokens[None], mask[None]
        pos = torch.arange(tokens.shape[1])[None]
        out = []
        for _ in range(frames):
            h = self.backbone(self._embed(tokens, mask), input_pos=pos, mask=bmask[pos])[:, -1]
            code = self.codebook0_head(h).argmax(-1, keepdim=True)
            codes = [code]
            cur = torch.cat([h[:, None], self.audio_embeddings(code)], dim=1)
            dpos = torch.arange(2)[None]
            self.decoder.reset_caches()
            for i in range(1, self.k):
                dh = self.decoder(self.projection(cur), input_pos=dpos, mask=dmask[dpos])[:, -1]
                code = torch.mm(dh, self.audio_head[i - 1]).argmax(-1, keepdim=True)
                codes.append(code)
                cur = self.audio_embeddings(code + i * self.v)
                dpos = dpos[:, -1:] + 1
            frame = torch.cat(codes, dim=1)  # [1, K]
            out.append(frame[0])
            tokens = torch.cat([frame, torch.zeros(1, 1, dtype=frame.dtype)], dim=1)[:, None]
            mask = torch.cat([torch.ones(1, self.k, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool)], 1)[:, None]
            pos = pos[:, -1:] + 1
        return torch.stack(out)


def text_segment(tokenizer, bos: int, eos: int, text: str, speaker: int, k: int):
    """Sesame's _tokenize_text_segment: the ids in the text column, nothing in the audio ones."""
    ids = [bos, *tokenizer.encode(f"[{speaker}]{text}", add_special_tokens=False).ids, eos]
    tokens = torch.zeros(len(ids), k + 1, dtype=torch.long)
    mask = torch.zeros(len(ids), k + 1, dtype=torch.bool)
    tokens[:, -1] = torch.tensor(ids)
    mask[:, -1] = True
    return tokens, mask
