"""Train the three generative LoRA adapters on the frozen demo decoder, write them in PEFT's
format (adapter_config.json + adapter_model.safetensors + README.md model card), and write the
PyTorch golden file the TypeScript engine tests compare against.

usage: python3 factory/decoder/adapters.py <build dir> <repo root>
ONLY=summarize (a comma list) retrains those adapters alone and keeps the others' files, golden
entries and report rows as they are (same base).
The base comes from <build>/base.pt, or with REUSE_BASE=1 from the committed slotted model
(models/demo-llm/model.onnx). Seeded; THREADS may be set in the environment."""
import json, math, os, random, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(__file__))
from llama import CFG, PROJ, LlamaForCausalLM
from onnx_io import load_base_from_onnx
from peft_io import golden_entry, peft_config, probe_ids, write_safetensors

BUILD, ROOT = sys.argv[1], sys.argv[2]
SEED = 2468
BASE_NAME = "adapterhost-demo-llama"
# One torch (OpenMP) thread and OpenBLAS threads for the GEMMs: two pools on two cores thrash
# (measured: 3x the CPU time per step). build.sh sets OPENBLAS_NUM_THREADS.
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
T0 = time.time()
ADAPTERS_DIR = os.path.join(ROOT, "adapters-llm")

ADAPTERS = [
    # all seven projections, one rank
    dict(id="summarize", targets=PROJ, r=8, alpha=16, rslora=False, rank_pattern={}, alpha_pattern={},
         steps=int(os.environ.get("STEPS_SUMMARIZE", "1200")), lr=2e-3,
         task="English long package description → its one-line English short description",
         card_input="a Debian package's English long description", card_output="its English short description"),
    # all seven projections, smaller rank on the MLP (rank_pattern / alpha_pattern)
    dict(id="translate-it", targets=PROJ, r=16, alpha=32, rslora=False,
         rank_pattern={"gate_proj": 8, "up_proj": 8, "down_proj": 8}, alpha_pattern={"gate_proj": 16, "up_proj": 16, "down_proj": 16},
         steps=int(os.environ.get("STEPS_TRANSLATE", "600")), lr=2e-3,
         task="English short package description → the Italian short description",
         card_input="a Debian package's English short description", card_output="the Italian short description (Debian's translators')"),
    # attention only, rsLoRA
    dict(id="riassumi", targets=["q_proj", "k_proj", "v_proj", "o_proj"], r=16, alpha=16, rslora=True, rank_pattern={}, alpha_pattern={},
         steps=int(os.environ.get("STEPS_RIASSUMI", "500")), lr=2e-3,
         task="Italian long package description → the Italian short description",
         card_input="a Debian package's Italian long description", card_output="its Italian short description"),
]
BATCH = 16

def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)

def rank_alpha(a, name):
    short = name.split(".")[-1]
    r = a["rank_pattern"].get(short, a["r"]); al = a["alpha_pattern"].get(short, a["alpha"])
    return r, al, (al / math.sqrt(r) if a["rslora"] else al / r)

def load_base():
    model = LlamaForCausalLM(CFG)
    if os.environ.get("REUSE_BASE"):
        load_base_from_onnx(model, os.path.join(ROOT, "models", "demo-llm", "model.onnx"))
        log("base reloaded from models/demo-llm/model.onnx")
    else:
        model.load_state_dict(torch.load(os.path.join(BUILD, "base.pt")))
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return model

def enable(model, a):
    params = []
    for name, m in model.lora_linears(a["targets"]):
        r, _, scale = rank_alpha(a, name)
        m.enable_lora(r, scale); params += [m.lora_A, m.lora_B]
    return params

def disable(model):
    for _, m in model.lora_linears(PROJ):
        m.disable_lora()

def batch_tensors(exs):
    seqs = [e["prompt_ids"] + e["answer_ids"] for e in exs]
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    labels = torch.full((len(seqs), L), -100, dtype=torch.long)
    for i, (e, s) in enumerate(zip(exs, seqs)):
        ids[i, :len(s)] = torch.tensor(s); mask[i, :len(s)] = 1
        p = len(e["prompt_ids"])
        labels[i, p - 1:len(s) - 1] = torch.tensor(e["answer_ids"])  # predict each answer token (and <|im_end|>)
    return ids, mask, labels

def hidden_states(model, ids, mask):
    """The final-norm hidden states (so the vocab projection runs only where the loss needs it)."""
    b, t = ids.shape
    pos = torch.arange(t).expand(b, t)
    saved = model.lm_head
    model.lm_head = torch.nn.Identity()
    try:
        h, _ = model.step(ids, mask, pos)
    finally:
        model.lm_head = saved
    return h

def train(model, a, train_rows):
    torch.manual_seed(SEED)
    params = enable(model, a)
    opt = torch.optim.AdamW(params, lr=a["lr"], weight_decay=0.0)
    steps = a["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / steps))
    rng = random.Random(SEED)
    # batches of similar lengths: sort a shuffled pool, cut into batches, shuffle the batches
    order = list(range(len(train_rows))); rng.shuffle(order)
    pool = sorted(order[: steps * BATCH], key=lambda i: len(train_rows[i]["prompt_ids"]) + len(train_rows[i]["answer_ids"]))
    batches = [pool[i:i + BATCH] for i in range(0, len(pool), BATCH)]
    rng.shuffle(batches)
    for step, bi in enumerate(batches[:steps]):
        ids, mask, labels = batch_tensors([train_rows[i] for i in bi])
        h = hidden_states(model, ids, mask)
        sel = labels != -100
        loss = F.cross_entropy(model.lm_head(h[sel]), labels[sel])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        if step % 25 == 0 or step == steps - 1:
            log(f"{a['id']} step {step} loss {loss.item():.3f}")
    return len(batches[:steps]) * BATCH

def write_adapter(model, a):
    d = os.path.join(ADAPTERS_DIR, a["id"]); os.makedirs(d, exist_ok=True)
    tensors = {}
    for name, m in model.lora_linears(a["targets"]):
        tensors[f"base_model.model.{name}.lora_A.weight"] = m.lora_A
        tensors[f"base_model.model.{name}.lora_B.weight"] = m.lora_B
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
    cfg = peft_config(BASE_NAME, a)
    json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"), indent=2, ensure_ascii=False)

def merged_copy(model, a):
    import copy
    m = copy.deepcopy(model)
    for _, lin in m.lora_linears(a["targets"]):
        if hasattr(lin, "lora_A"):
            lin.merge_lora(); lin.disable_lora()
    return m

def main():
    model = load_base()
    golden = {"base_model": BASE_NAME, "probe_ids": None, "adapters": {}, "base": None}
    only = [x for x in os.environ.get("ONLY", "").split(",") if x]
    report = {}
    if only:
        unknown = set(only) - {a["id"] for a in ADAPTERS}
        if unknown:
            raise SystemExit(f"ONLY: unknown adapter(s) {sorted(unknown)}")
        golden = json.load(open(os.path.join(ROOT, "test", "fixtures", "golden-llm.json")))
        report = json.load(open(os.path.join(BUILD, "adapters-report.json")))["adapters"]
    data = {a["id"]: json.load(open(os.path.join(BUILD, f"task-{a['id']}.json"))) for a in ADAPTERS}
    prompts_of = lambda tid: [e["prompt_ids"] for e in data[tid] if e["split"] == "test"][:3]
    for a in ADAPTERS:
        if only and a["id"] not in only:
            continue
        rows = data[a["id"]]
        tr = [e for e in rows if e["split"] == "train"]
        te = [e for e in rows if e["split"] == "test"]
        seen = train(model, a, tr)
        write_adapter(model, a)
        prompts = prompts_of(a["id"])
        golden["adapters"][a["id"]] = {"unmerged": golden_entry(model, prompts, CFG["vocab"]), "merged": golden_entry(merged_copy(model, a), prompts, CFG["vocab"])}
        report[a["id"]] = {"train_rows_available": len(tr), "train_examples_seen": seen, "test_rows": len(te), "steps": a["steps"],
                           "r": a["r"], "alpha": a["alpha"], "targets": list(a["targets"]), "rank_pattern": a["rank_pattern"], "rslora": a["rslora"]}
        disable(model)
        log(a["id"], "written")
    golden["base"] = golden_entry(model, prompts_of("summarize")[:2], CFG["vocab"])
    golden["probe_ids"] = probe_ids(CFG["vocab"])
    json.dump(golden, open(os.path.join(ROOT, "test", "fixtures", "golden-llm.json"), "w"))
    json.dump({"adapters": report, "seconds": round(time.time() - T0)}, open(os.path.join(BUILD, "adapters-report.json"), "w"), indent=1)
    log("done")

if __name__ == "__main__":
    main()
