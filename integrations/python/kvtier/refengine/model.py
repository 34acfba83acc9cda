"""A small decoder-only transformer whose attention reads K/V from a paged cache.

Llama-shaped: token embedding, per layer RMSNorm → q/k/v projections → RoPE →
grouped-query attention → o projection → RMSNorm → SwiGLU MLP, final RMSNorm
and LM head. Weights are random from a fixed seed (nothing is downloaded).

Batch invariance. The numbers are meant to be compared bit for bit between a
run that computed every token and a run that loaded a prefix's KV and
computed only the rest (or decoded one token at a time). A kernel may round a
row differently depending on how many rows (or keys) it is called with, so
every operation here works on whole *tiles* of TILE (=16, the block size)
rows aligned to absolute positions: a step's rows are padded out to whole
tiles (pad rows start as zeros and are thrown away), and attention for a tile
reads the keys [0, tile end) with a causal mask, so masked slots (a block's
not-yet-written tail) get probability exactly 0. Every row is then computed by
the same kernels with the same shapes whatever else was in the step. A step
that starts inside a tile recomputes the tile's earlier rows from the cached
K/V but writes K/V only for the tokens it was asked to compute, so a loaded
block is never overwritten. vLLM's GPU kernels are not batch invariant in
this sense; this is a property of the instrument, not of vLLM.

Why ALiBi as well as RoPE. RoPE is baked into K when it is written, so once a
query sees every key of a prefix, attention is a sum over a *set* of (k, v)
pairs: two loaded blocks swapped in the cache change the result only by
float summation order (1e-5 here). A model that should notice KV in the wrong
place must use the key's position when it reads the cache; an ALiBi bias
-slope_h * (query_pos - key_pos), with key_pos from the slot's place in the
block table, does that (as ALiBi models in vLLM do). alibi=False gives a
plain Llama-style model.

vLLM's GPU kernels are not batch invariant
in this sense; this is a property of the instrument, not of vLLM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

TILE = 16


@dataclass(frozen=True)
class ModelConfig:
    vocab: int = 1024
    layers: int = 4
    q_heads: int = 8
    kv_heads: int = 2
    head_dim: int = 64
    mlp: int = 1024
    qk_gain: float = 2.5     # scales wq and wk: sharper attention, so a wrong block moves the logits
    alibi: bool = True       # also an ALiBi distance bias, applied when the cache is read (see below)
    rope_theta: float = 10000.0
    sliding_window: int = 0  # > 0: the layers in sliding_layers attend to the last this many tokens
    sliding_layers: tuple[int, ...] = ()   # a hybrid model (Gemma-3 / gpt-oss style) when non-empty
    eps: float = 1e-5
    seed: int = 1234

    @property
    def hidden(self) -> int:
        return self.q_heads * self.head_dim


class Weights:
    """Random weights from `cfg.seed`, generated in float32 and cast to `dtype`."""

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: Any = "cpu") -> None:
        g = torch.Generator().manual_seed(cfg.seed)

        def w(*shape: int, scale: Optional[float] = None) -> torch.Tensor:
            s = scale if scale is not None else 1.0 / math.sqrt(shape[0])
            return (torch.randn(*shape, generator=g) * s).to(dtype=dtype, device=device)

        H, D, KH = cfg.hidden, cfg.head_dim, cfg.kv_heads
        self.embed = w(cfg.vocab, H, scale=1.0)
        self.layers = []
        for _ in range(cfg.layers):
            self.layers.append({
                "ln1": (1.0 + 0.1 * torch.randn(H, generator=g)).to(dtype=dtype, device=device),
                "wq": w(H, cfg.q_heads * D, scale=cfg.qk_gain / math.sqrt(H)),
                "wk": w(H, KH * D, scale=cfg.qk_gain / math.sqrt(H)), "wv": w(H, KH * D),
                "wo": w(cfg.q_heads * D, H),
                "ln2": (1.0 + 0.1 * torch.randn(H, generator=g)).to(dtype=dtype, device=device),
                "wg": w(H, cfg.mlp), "wu": w(H, cfg.mlp), "wd": w(cfg.mlp, H),
            })
        self.ln_f = (1.0 + 0.1 * torch.randn(H, generator=g)).to(dtype=dtype, device=device)
        self.lm_head = w(H, cfg.vocab)
        for L in self.layers:
            for k in ("wq", "wk", "wv", "wo", "wg", "wu", "wd"):
                L[k] = Linear(L[k])
        self.lm_head = Linear(self.lm_head)
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        self.inv_freq = inv.to(device)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return y.to(x.dtype) * w


def rope(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (rotate-half form) of x (rows, heads, D) at positions `pos` (rows,)."""
    ang = pos.to(torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float()[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1).float()[:, None, :]
    xf = x.float()
    half = xf.shape[-1] // 2
    rot = torch.cat([-xf[..., half:], xf[..., :half]], -1)
    return (xf * cos + rot * sin).to(x.dtype)


def _use_mkldnn(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def mm_t(x: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ w_t (N, K)ᵀ. float32 on CPU goes through oneDNN: torch's CPU float32 matmul uses
    whatever BLAS it was linked with, which on Debian is the slow reference BLAS."""
    if _use_mkldnn(x):
        wm = w_t if w_t.is_mkldnn else w_t.contiguous().to_mkldnn()
        return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), wm, None).to_dense()
    return x @ w_t.t()


class Linear:
    """y = x @ w with w (in, out); keeps the oneDNN copy of wᵀ when that path is used."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w_t = w.t().contiguous()
        if _use_mkldnn(self.w_t):
            self.w_t = self.w_t.to_mkldnn()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return mm_t(x, self.w_t)


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn applied to TILE-row slices of x (x is whole, position-aligned tiles)."""
    assert x.shape[0] % TILE == 0
    if x.shape[0] == TILE:
        return fn(x)
    return torch.cat([fn(x[i:i + TILE]) for i in range(0, x.shape[0], TILE)], 0)


class KVPlanes:
    """How the model sees one layer's KV: K and V as (num_blocks, block, kv_heads, head_dim) views."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v

    def write(self, blocks: torch.Tensor, offsets: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[blocks, offsets] = k
        self.v[blocks, offsets] = v

    def gather(self, block_table: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of tokens [0, n) read through the block table."""
        nb = -(-n // self.k.shape[1])
        idx = torch.tensor(block_table[:nb], dtype=torch.long, device=self.k.device)
        K = self.k.index_select(0, idx).reshape(-1, self.k.shape[2], self.k.shape[3])[:n]
        V = self.v.index_select(0, idx).reshape(-1, self.v.shape[2], self.v.shape[3])[:n]
        return K, V


@dataclass
class Segment:
    """One request's share of a step: compute tokens [start, end) of `tokens`."""

    tokens: list[int]
    start: int
    end: int
    block_table: list[int]
    hidden: Optional[torch.Tensor] = None     # rows [tile_start, tile_end): padded to whole tiles

    @property
    def tile_start(self) -> int:
        return self.start - self.start % TILE

    @property
    def tile_end(self) -> int:
        return -(-self.end // TILE) * TILE


class Transformer:
    def __init__(self, cfg: ModelConfig, dtype: torch.dtype = torch.float32, device: Any = "cpu") -> None:
        self.cfg, self.dtype, self.device = cfg, dtype, torch.device(device)
        self.w = Weights(cfg, dtype, self.device)
        # ALiBi slopes 2^(-8(h+1)/H), one per query head
        self.slopes = (torch.tensor([2.0 ** (-8.0 * (h + 1) / cfg.q_heads) for h in range(cfg.q_heads)],
                                    device=self.device) if cfg.alibi else None)

    def embed(self, seg: Segment) -> None:
        ids = torch.tensor(seg.tokens[seg.tile_start:seg.end], dtype=torch.long, device=self.device)
        h = self.w.embed.index_select(0, ids)
        pad = seg.tile_end - seg.end
        seg.hidden = torch.cat([h, h.new_zeros(pad, h.shape[1])]) if pad else h

    def layer(self, i: int, kv: KVPlanes, seg: Segment) -> None:
        """Layer i for one segment: writes K/V of [start, end) into the cache, then attends through it."""
        cfg, L = self.cfg, self.w.layers[i]
        D, QH, KH = cfg.head_dim, cfg.q_heads, cfg.kv_heads
        a, s, e, z = seg.tile_start, seg.start, seg.end, seg.tile_end
        x = seg.hidden
        assert x is not None
        h = rms_norm(x, L["ln1"], cfg.eps)
        pos = torch.arange(a, z, device=self.device)
        q = rope(tiled(lambda t: L["wq"](t), h).view(-1, QH, D), pos, self.w.inv_freq)
        k = rope(tiled(lambda t: L["wk"](t), h).view(-1, KH, D), pos, self.w.inv_freq)
        v = tiled(lambda t: L["wv"](t), h).view(-1, KH, D)
        bs = kv.k.shape[1]
        new = torch.arange(s, e, device=self.device)
        table = torch.tensor(seg.block_table, dtype=torch.long, device=self.device)
        kv.write(table[new // bs], new % bs, k[s - a:e - a], v[s - a:e - a])
        K, V = kv.gather(seg.block_table, z)                     # (z, KH, D), from the paged cache
        group, scale = QH // KH, 1.0 / math.sqrt(D)
        slopes = self.slopes
        Kh = [K[:, h].contiguous() for h in range(KH)]             # (e, D) per KV head
        Vh = [V[:, h].contiguous() for h in range(KH)]
        outs = []
        for t0 in range(a, z, TILE):
            t1 = t0 + TILE
            rows = TILE
            qpos = torch.arange(t0, t1, device=self.device).repeat_interleave(group)
            mask = torch.arange(t1, device=self.device)[None, :] > qpos[:, None]
            if i in cfg.sliding_layers:
                # sliding window: keys older than the window get probability exactly 0, so a
                # block outside it may hold anything (vLLM frees those; a load skips them)
                mask = mask | (torch.arange(t1, device=self.device)[None, :] <= qpos[:, None] - cfg.sliding_window)
            heads = []
            for h in range(KH):                                    # the query heads of KV head h
                qt = q[t0 - a:t1 - a, h * group:(h + 1) * group].reshape(rows * group, D)
                sc = mm_t(qt, Kh[h][:t1]).float() * scale          # (rows*group, t1): keys [0, t1)
                if slopes is not None:
                    dist = (qpos[:, None] - torch.arange(t1, device=self.device)[None, :]).float()
                    sc = sc - slopes[h * group:(h + 1) * group].repeat(rows)[:, None] * dist
                p = torch.softmax(sc.masked_fill(mask, float("-inf")), -1).to(self.dtype)
                heads.append(mm_t(p, Vh[h][:t1].t()).view(rows, group, D))
            outs.append(torch.cat(heads, 1).reshape(rows, QH * D))
        o = torch.cat(outs, 0)
        x = x + tiled(lambda t: L["wo"](t), o)
        h = rms_norm(x, L["ln2"], cfg.eps)
        m = tiled(lambda t: torch.nn.functional.silu(L["wg"](t)) * L["wu"](t), h)
        seg.hidden = x + tiled(lambda t: L["wd"](t), m)

    def logits(self, seg: Segment) -> torch.Tensor:
        """Next-token logits after the segment's last token (float32)."""
        assert seg.hidden is not None
        last = seg.hidden[seg.end - 1 - seg.tile_start:seg.end - seg.tile_start]
        return self.w.lm_head(rms_norm(last, self.w.ln_f, self.cfg.eps)).float()[0]
