"""A tiny random decoder of the demo's layout (2 layers, hidden 32, GQA 4:2), exported plain,
with two random PEFT adapters and PyTorch goldens: the committed fixture of the `prepare` and
mixed-batch tests (test/fixtures/tiny-llama/). Seeded.

usage: python3 factory/decoder/tiny.py <tokenizer dir> <out dir>
  → <out>/export/ (model.onnx, tokenizer files), <out>/adapters/{a,b}/, <out>/golden.json"""
import copy, json, os, shutil, sys
import torch
sys.path.insert(0, os.path.dirname(__file__))
from llama import CFG, LlamaForCausalLM
from onnx_io import export_with_past
from peft_io import golden_entry, peft_config, probe_ids, write_safetensors
import files

TINY = dict(CFG, hidden=32, layers=2, heads=4, kv_heads=2, inter=48)

def main(tok_dir, out):
    torch.manual_seed(77)
    m = LlamaForCausalLM(TINY)
    for n, p in m.named_parameters():
        if "norm" in n:  # distinct norm weights (identical initializers would be merged by the exporter)
            torch.nn.init.normal_(p, 1.0, 0.1)
    exp = os.path.join(out, "export")
    os.makedirs(exp, exist_ok=True)
    export_with_past(m, os.path.join(exp, "model.onnx"))
    shutil.copy(os.path.join(tok_dir, "tokenizer.json"), os.path.join(exp, "tokenizer.json"))
    files.write(exp, TINY["max_pos"])
    prompts = [[1, 3, 400, 500, 600, 4, 10], [1, 3, 77, 4, 10, 3, 99, 100, 101, 102, 103, 9]]
    golden = {"probe_ids": probe_ids(TINY["vocab"]), "base": golden_entry(m, prompts, TINY["vocab"], 12), "adapters": {}}
    specs = [dict(id="tiny-all", targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], r=4, alpha=8,
                  rslora=False, rank_pattern={}, alpha_pattern={}),
             dict(id="tiny-qv", targets=["q_proj", "v_proj"], r=8, alpha=16, rslora=True, rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 4})]
    for a in specs:
        mm = copy.deepcopy(m)
        tensors = {}
        for name, lin in mm.lora_linears(a["targets"]):
            short = name.split(".")[-1]
            r = a["rank_pattern"].get(short, a["r"]); al = a["alpha_pattern"].get(short, a["alpha"])
            lin.enable_lora(r, al / r ** 0.5 if a["rslora"] else al / r)
            torch.nn.init.normal_(lin.lora_B, 0.0, 0.3)
            tensors[f"base_model.model.{name}.lora_A.weight"] = lin.lora_A
            tensors[f"base_model.model.{name}.lora_B.weight"] = lin.lora_B
        d = os.path.join(out, "adapters", a["id"]); os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        json.dump(peft_config("tiny-llama", a), open(os.path.join(d, "adapter_config.json"), "w"), indent=2)
        golden["adapters"][a["id"]] = golden_entry(mm, prompts, TINY["vocab"], 12)
    json.dump(golden, open(os.path.join(out, "golden.json"), "w"))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
