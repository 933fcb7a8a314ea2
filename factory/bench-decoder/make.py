"""The generation benchmark's synthetic decoder (issue 11): a Llama of SmolLM2-135M's shape with seeded
random weights, exported in optimum's `text-generation-with-past` layout, the same weights as one
safetensors file with Hugging Face names (for the GGUF writer and the peers), and random PEFT LoRA
adapters. An offline model maker only: `npm run bench` (bench/gen/models.ts) calls it once and
caches what it writes under build/bench/.

usage: python3 factory/bench-decoder/make.py <out dir> <json spec>
  spec: {"shape": {vocab, hidden, layers, heads, kv_heads, inter, max_pos}, "seed": int, "proj_std": float, "base_name": str,
         "adapters": [{"id", "targets", "r", "alpha", "seed"}, …], "tokenizer_dir": str}
  → <out>/export/{model.onnx, tokenizer.json, tokenizer_config.json, generation_config.json},
    <out>/weights.safetensors, <out>/adapters/<id>/{adapter_model.safetensors, adapter_config.json}

Token ids 0–9 (the tokenizer's specials, end-of-sequence among them) get zero embedding rows, so
their logits are 0 while the top logit of a step is well above it: greedy decoding never ends early
and every figure generates exactly the tokens it asks for, in every engine."""
import json, math, os, shutil, sys
import torch
# The demo decoder's factory holds the model (Hugging Face module names), its export in optimum's
# layout and the safetensors writer; this maker only draws other weights for them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "decoder"))
from llama import CFG, LlamaForCausalLM
from onnx_io import export_with_past
from peft_io import write_safetensors

def peft_config(a, base_name):
    return {"base_model_name_or_path": base_name, "bias": "none", "fan_in_fan_out": False,
            "inference_mode": True, "lora_alpha": a["alpha"], "lora_dropout": 0.0, "modules_to_save": None,
            "peft_type": "LORA", "r": a["r"], "rank_pattern": {}, "alpha_pattern": {},
            "target_modules": list(a["targets"]), "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}

def main(out, spec):
    shape = spec["shape"]
    cfg = dict(CFG, **shape)
    torch.manual_seed(spec["seed"])
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:  # distinct norm weights (identical initializers would be merged by the exporter)
                torch.nn.init.normal_(p, 1.0, 0.1)
            elif "proj" in n:  # std 0.02 (HF's init) leaves the embedding dominant: greedy repeats one token
                torch.nn.init.normal_(p, 0.0, spec["proj_std"])
        m.model.embed_tokens.weight[:10] = 0  # specials (pad, bos, eos, …): logit 0, never the argmax
    exp = os.path.join(out, "export")
    os.makedirs(exp, exist_ok=True)
    export_with_past(m, os.path.join(exp, "model.onnx"))
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(spec["tokenizer_dir"], f), os.path.join(exp, f))
    write_safetensors(os.path.join(out, "weights.safetensors"), {k: v for k, v in m.state_dict().items() if k != "lm_head.weight"})
    for a in spec["adapters"]:
        torch.manual_seed(a["seed"])
        tensors = {}
        for name, lin in m.lora_linears(a["targets"]):
            A = torch.empty(a["r"], lin.in_features)
            torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            B = torch.randn(lin.out_features, a["r"]) * a.get("b_std", 0.05)
            tensors[f"base_model.model.{name}.lora_A.weight"] = A
            tensors[f"base_model.model.{name}.lora_B.weight"] = B
        d = os.path.join(out, "adapters", a["id"]); os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        json.dump(peft_config(a, spec["base_name"]), open(os.path.join(d, "adapter_config.json"), "w"), indent=2)

if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
