"""A small Llama-architecture decoder in plain PyTorch with Hugging Face's module names
(model.embed_tokens, model.layers.{i}.self_attn.{q,k,v,o}_proj, model.layers.{i}.mlp.{gate,up,down}_proj,
model.norm, lm_head tied to the embedding): RMSNorm, rotary embeddings (HF rotate_half layout),
SwiGLU, grouped-query attention, and a KV cache in optimum's `text-generation-with-past` layout.
LoRA follows PEFT's math: y = x Wᵀ + s·(x Aᵀ) Bᵀ."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

CFG = dict(vocab=8192, hidden=256, layers=6, heads=4, kv_heads=2, inter=768, max_pos=256,
           rope_theta=10000.0, rms_eps=1e-5)
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

class LoRALinear(nn.Linear):
    def __init__(self, i, o):
        super().__init__(i, o, bias=False)
    def enable_lora(self, r, scale):
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = scale
    def disable_lora(self):
        for n in ("lora_A", "lora_B"):
            if hasattr(self, n):
                delattr(self, n)
    def merge_lora(self):
        """W ← W + s·B·A (the merged copy PEFT's merge_and_unload makes)."""
        with torch.no_grad():
            self.weight += self.scale * (self.lora_B @ self.lora_A)
    def forward(self, x):
        y = F.linear(x, self.weight)
        if hasattr(self, "lora_A"):
            y = y + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale
        return y

class RMSNorm(nn.Module):
    def __init__(s, h, eps):
        super().__init__(); s.weight = nn.Parameter(torch.ones(h)); s.eps = eps
    def forward(s, x):
        return s.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps))

def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

class Attention(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.nh, s.nkv, s.dh = c["heads"], c["kv_heads"], c["hidden"] // c["heads"]
        h = c["hidden"]
        s.q_proj, s.k_proj = LoRALinear(h, s.nh * s.dh), LoRALinear(h, s.nkv * s.dh)
        s.v_proj, s.o_proj = LoRALinear(h, s.nkv * s.dh), LoRALinear(s.nh * s.dh, h)
    def forward(s, x, cos, sin, bias, past_k, past_v):
        b, t, _ = x.shape
        q = s.q_proj(x).view(b, t, s.nh, s.dh).transpose(1, 2)
        k = s.k_proj(x).view(b, t, s.nkv, s.dh).transpose(1, 2)
        v = s.v_proj(x).view(b, t, s.nkv, s.dh).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2); v = torch.cat([past_v, v], dim=2)
        present = (k, v)
        g = s.nh // s.nkv
        T = k.shape[2]
        kk = k[:, :, None].expand(b, s.nkv, g, T, s.dh).reshape(b, s.nh, T, s.dh)
        vv = v[:, :, None].expand(b, s.nkv, g, T, s.dh).reshape(b, s.nh, T, s.dh)
        a = (q @ kk.transpose(-1, -2)) / math.sqrt(s.dh) + bias
        o = (a.softmax(-1) @ vv).transpose(1, 2).reshape(b, t, s.nh * s.dh)
        return s.o_proj(o), present

class MLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.gate_proj, s.up_proj = LoRALinear(c["hidden"], c["inter"]), LoRALinear(c["hidden"], c["inter"])
        s.down_proj = LoRALinear(c["inter"], c["hidden"])
    def forward(s, x):
        return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))

class Layer(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.input_layernorm, s.post_attention_layernorm = RMSNorm(c["hidden"], c["rms_eps"]), RMSNorm(c["hidden"], c["rms_eps"])
        s.self_attn, s.mlp = Attention(c), MLP(c)
    def forward(s, x, cos, sin, bias, pk, pv):
        a, present = s.self_attn(s.input_layernorm(x), cos, sin, bias, pk, pv)
        x = x + a
        return x + s.mlp(s.post_attention_layernorm(x)), present

class Model(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        s.layers = nn.ModuleList([Layer(c) for _ in range(c["layers"])])
        s.norm = RMSNorm(c["hidden"], c["rms_eps"])

class LlamaForCausalLM(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.c = c
        s.model = Model(c)
        s.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        for m in s.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for l in s.model.layers:  # GPT-2 style scaled init of the residual outputs
            nn.init.normal_(l.self_attn.o_proj.weight, std=0.02 / math.sqrt(2 * c["layers"]))
            nn.init.normal_(l.mlp.down_proj.weight, std=0.02 / math.sqrt(2 * c["layers"]))
        s.lm_head.weight = s.model.embed_tokens.weight  # tied
        dh = c["hidden"] // c["heads"]
        s.register_buffer("inv_freq", 1.0 / (c["rope_theta"] ** (torch.arange(0, dh, 2).float() / dh)), persistent=False)

    def forward(s, input_ids, attention_mask, position_ids, *flat_past):
        """The exported signature (optimum's layout): flat past k0, v0, k1, v1, … → (logits, k0, v0, …)."""
        past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(len(flat_past) // 2)] or None
        logits, presents = s.step(input_ids, attention_mask, position_ids, past)
        return (logits, *[t for kv in presents for t in kv])

    def step(s, input_ids, attention_mask, position_ids, past=None):
        """input_ids, position_ids [b, s]; attention_mask [b, past + s]; past: list of (k, v)
        [b, kv_heads, past, head_dim] or None. Returns logits [b, s, vocab] and presents."""
        b, t = input_ids.shape
        x = s.model.embed_tokens(input_ids)
        freqs = position_ids[..., None].float() * s.inv_freq  # [b, s, dh/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [b, 1, s, dh]
        T = attention_mask.shape[1]
        p = T - t
        q_idx = torch.arange(t, device=input_ids.device)[:, None] + p
        k_idx = torch.arange(T, device=input_ids.device)[None, :]
        allowed = (k_idx <= q_idx)[None, None] & attention_mask[:, None, None, :].bool()
        bias = torch.where(allowed, torch.zeros((), dtype=x.dtype), torch.full((), torch.finfo(x.dtype).min, dtype=x.dtype))
        presents = []
        for i, l in enumerate(s.model.layers):
            pk, pv = (past[i] if past is not None else (None, None))
            x, pr = l(x, cos, sin, bias, pk, pv)
            presents.append(pr)
        return s.lm_head(s.model.norm(x)), presents

    def lora_linears(s, targets):
        for name, m in s.named_modules():
            if isinstance(m, LoRALinear) and name.split(".")[-1] in targets:
                yield name, m
