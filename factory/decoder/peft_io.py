"""PEFT file writers and the PyTorch reference ("golden") outputs of the decoder factory."""
import json, random, struct
import numpy as np
import torch

def peft_config(base_name, a):
    """adapter_config.json as PEFT 0.13 writes it for a CAUSAL_LM LoRA."""
    return {
        "alpha_pattern": a["alpha_pattern"], "auto_mapping": None, "base_model_name_or_path": base_name,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": a["alpha"], "lora_dropout": 0.0, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": None, "peft_type": "LORA", "r": a["r"], "rank_pattern": a["rank_pattern"],
        "revision": None, "target_modules": list(a["targets"]), "task_type": "CAUSAL_LM", "use_dora": False,
        "use_rslora": a["rslora"], "peft_version": "0.13.2",
    }

def write_safetensors(path, tensors, dtype="F32"):
    """A safetensors file of `tensors` (sorted keys, 8-byte aligned header) in F32 or F16."""
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        arr = tensors[k].detach().cpu().numpy().astype(np.float16 if dtype == "F16" else np.float32)
        b = arr.tobytes(); header[k] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

@torch.no_grad()
def greedy(model, prompt, n):
    """Step-by-step greedy decoding with the KV cache; per step the full logits row."""
    ids = torch.tensor([prompt]); past = None; T = 0; out, rows = [], []
    x = ids
    for _ in range(n):
        t = x.shape[1]
        logits, past = model.step(x, torch.ones(1, T + t, dtype=torch.long), torch.arange(T, T + t)[None], past)
        T += t
        row = logits[0, -1]
        rows.append(row.clone())
        nxt = int(row.argmax())
        out.append(nxt)
        x = torch.tensor([[nxt]])
    return out, rows


def probe_ids(vocab):
    """Fixed vocabulary ids whose logits the golden keeps at every step."""
    return sorted(random.Random(2468).sample(range(vocab), 48))

def golden_entry(model, prompts, vocab, n=32):
    """Per prompt: n greedy tokens, and at every step the logits of the probe ids and the top logit;
    the first step's logits in full."""
    PROBE = probe_ids(vocab)
    res = []
    for p in prompts:
        toks, rows = greedy(model, p, n)
        res.append({"prompt_ids": p, "tokens": toks,
                    "probe_logits": [[round(float(r[i]), 6) for i in PROBE] for r in rows],
                    "top_logits": [round(float(r.max()), 6) for r in rows],
                    "first_logits": [round(float(x), 6) for x in rows[0]]})
    return res

