"""Train the demo base model (masked-LM) and its LoRA task adapters; export the plain
ONNX base; write PEFT adapters (adapter_config.json + adapter_model.safetensors) and the
golden reference outputs the TypeScript tests compare against.

usage: python3 factory/train.py <build dir> <repo root>
Seeded (torch.manual_seed / random.Random; FACTORY_SEED, default 1234). Environment: FACTORY_THREADS (torch threads, default
2), REUSE_BASE=1 (reload the committed base instead of pretraining), PRETRAIN_STEPS (stage 1,
default 600), CONTINUE_STEPS (stages 2, 3, …: default 1400,1400,1400), RESUME_FROM=<plain .onnx>@<stage>
(start from a base exported after that stage instead of pretraining from scratch), GROW=0,1,1,2,2,3:1000 (after
the stages, a deeper base: new layer i starts as a copy of layer map[i], then that many more masked-LM
steps; a trial, docs/demo-model.md), FOCUS=spam:1000:3 (then a task-adaptive masked-LM stage: that many steps on the
stages' text plus the task's training text repeated 3 times; a trial), TASKS=spam,lang (train only
these adapters; the other adapters' report entries and goldens are kept as committed),
TASK_OVERRIDES='{"spam": {"epochs": 6, "dropout": false}}' (other settings for a trial run),
FACTORY_BF16=0 (training steps in float32; the default is bfloat16 autocast, about 4x faster on an AVX512-BF16
CPU, and how the committed base and adapters were made), BASE_SHAPE=4x256 (pretrain a base of another size
from scratch, layers x width; the default is 6x384; REUSE_BASE and RESUME_FROM take the size of the export).
See docs/demo-model.md."""
import collections, json, math, os, random, struct, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "decoder"))
from peft_io import write_safetensors  # one safetensors writer for both factories

BUILD, ROOT = sys.argv[1], sys.argv[2]
SEED = int(os.environ.get("FACTORY_SEED", "1234"))   # everything train.py draws (data.py has its own)
THREADS = int(os.environ.get("FACTORY_THREADS", "2"))
torch.set_num_threads(THREADS)
torch.manual_seed(SEED)
random.seed(SEED)
BASE_NAME = "adapterhost-demo-bert"
CFG = dict(vocab=6000, hidden=384, layers=6, heads=6, inter=1536, max_pos=128, type_vocab=2)   # 13.0 M parameters
PRETRAIN_STEPS = int(os.environ.get("PRETRAIN_STEPS", "600"))    # stage 1: the 7 fortunes languages + mail
# stages 2, 3, …: each runs on stage 1's corpus + every task's training text, with a fresh MLM head
CONTINUE_STEPS = [int(x) for x in os.environ.get("CONTINUE_STEPS", "2000,1400,1400").split(",") if x]
PRETRAIN_BATCH = 128
# Masked-LM and adapter training steps compute in bfloat16 (autocast; weights, optimizer and every
# evaluation stay float32): about 4x faster on a CPU with AVX512-BF16 (docs/demo-model.md), and how the
# committed base and adapters were made. FACTORY_BF16=0 trains in float32 (for a CPU without bf16).
BF16 = os.environ.get("FACTORY_BF16", "1") != "0"
def training_precision():
    """The context of a training step's forward pass: bfloat16 autocast under FACTORY_BF16, else a no-op."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16)
def set_shape(layers, hidden):
    """The base's size: `layers` blocks of width `hidden` (64-wide heads, 4x wide feed-forward)."""
    CFG.update(layers=layers, hidden=hidden, heads=hidden // 64, inter=4 * hidden)
if os.environ.get("BASE_SHAPE"):   # BASE_SHAPE=4x256: another base size, pretrained from scratch (a trial)
    set_shape(*(int(x) for x in os.environ["BASE_SHAPE"].split("x")))
MAXLEN = 64
T0 = time.time()

def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)

# ---------------------------------------------------------------- model (HF BERT names)
class LoRALinear(nn.Linear):
    """nn.Linear plus optional LoRA: y = x W^T + b + s * (x A^T) B^T (PEFT's math)."""
    def enable_lora(self, r, scale):
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = scale
    def disable_lora(self):
        for n in ("lora_A", "lora_B"):
            if hasattr(self, n):
                delattr(self, n)
    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if hasattr(self, "lora_A"):
            y = y + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale
        return y

class LayerNorm32(nn.LayerNorm):
    """nn.LayerNorm that takes a bfloat16 input in float32 (FACTORY_BF16's autocast leaves layer_norm
    to its inputs' type on CPU); a float32 input runs, and exports, exactly as nn.LayerNorm."""
    def forward(self, x):
        return super().forward(x if x.dtype == torch.float32 else x.float())

class SelfAttn(nn.Module):
    def __init__(s, h, nh):
        super().__init__(); s.nh = nh; s.dh = h // nh
        s.query, s.key, s.value = LoRALinear(h, h), LoRALinear(h, h), LoRALinear(h, h)
    def forward(s, x, bias):
        b, t, h = x.shape
        q = s.query(x).view(b, t, s.nh, s.dh).transpose(1, 2)
        k = s.key(x).view(b, t, s.nh, s.dh).transpose(1, 2)
        v = s.value(x).view(b, t, s.nh, s.dh).transpose(1, 2)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(s.dh) + bias
        return (a.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)

class Out(nn.Module):
    def __init__(s, i, h):
        super().__init__(); s.dense = nn.Linear(i, h); s.LayerNorm = LayerNorm32(h, eps=1e-12); s.dropout = nn.Dropout(0.1)
    def forward(s, x, res):
        return s.LayerNorm(s.dropout(s.dense(x)) + res)

class Attention(nn.Module):
    def __init__(s, h, nh):
        super().__init__(); s.self = SelfAttn(h, nh); s.output = Out(h, h)
    def forward(s, x, bias):
        return s.output(s.self(x, bias), x)

class Inter(nn.Module):
    def __init__(s, h, i):
        super().__init__(); s.dense = nn.Linear(h, i)
    def forward(s, x):
        return F.gelu(s.dense(x))

class Layer(nn.Module):
    def __init__(s, c):
        super().__init__(); s.attention = Attention(c["hidden"], c["heads"])
        s.intermediate = Inter(c["hidden"], c["inter"]); s.output = Out(c["inter"], c["hidden"])
    def forward(s, x, bias):
        a = s.attention(x, bias)
        return s.output(s.intermediate(a), a)

class Embeddings(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.word_embeddings = nn.Embedding(c["vocab"], c["hidden"], padding_idx=0)
        s.position_embeddings = nn.Embedding(c["max_pos"], c["hidden"])
        s.token_type_embeddings = nn.Embedding(c["type_vocab"], c["hidden"])
        s.LayerNorm = LayerNorm32(c["hidden"], eps=1e-12); s.dropout = nn.Dropout(0.1)
    def forward(s, ids, tt):
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        return s.dropout(s.LayerNorm(s.word_embeddings(ids) + s.position_embeddings(pos) + s.token_type_embeddings(tt)))

class Encoder(nn.Module):
    def __init__(s, c):
        super().__init__(); s.layer = nn.ModuleList([Layer(c) for _ in range(c["layers"])])
    def forward(s, x, bias):
        for l in s.layer:
            x = l(x, bias)
        return x

class DemoBert(nn.Module):
    """BERT encoder + masked-mean pooling + `classifier` head (HF module names)."""
    def __init__(s, c, num_labels=2):
        super().__init__(); s.embeddings = Embeddings(c); s.encoder = Encoder(c)
        s.classifier = nn.Linear(c["hidden"], num_labels)
        for m in s.modules():  # BERT's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
    def hidden(s, ids, mask, tt):
        bias = (1.0 - mask[:, None, None, :].float()) * -10000.0
        return s.encoder(s.embeddings(ids, tt), bias)
    def pool(s, h, mask):
        m = mask.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
    def forward(s, ids, mask, tt):
        pooled = s.pool(s.hidden(ids, mask, tt), mask)
        return s.classifier(pooled), pooled

class MLMHead(nn.Module):
    def __init__(s, c, emb):
        super().__init__(); s.dense = nn.Linear(c["hidden"], c["hidden"]); s.ln = LayerNorm32(c["hidden"], eps=1e-12)
        s.emb = emb; s.bias = nn.Parameter(torch.zeros(c["vocab"]))
    def forward(s, h):
        return F.linear(s.ln(F.gelu(s.dense(h))), s.emb.weight, s.bias)

# ---------------------------------------------------------------- data helpers
def load_ids(name):
    return json.load(open(os.path.join(BUILD, name)))

def batchify(seqs, pad=0):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s); mask[i, :len(s)] = 1
    return ids, mask, torch.zeros_like(ids)

# ---------------------------------------------------------------- pretraining (MLM)
def pretrain(model, corpus, steps, seed):
    """Masked-LM pretraining: `steps` batches of PRETRAIN_BATCH sequences, AdamW with a 60-step
    warmup and linear decay, a fresh MLM head (tied to the word embeddings), seeded by `seed`."""
    # sorted by length: a batch is a random window of similar lengths (little padding)
    corpus = sorted((s for s in corpus if len(s) >= 4), key=len)
    rng = random.Random(seed)
    head = MLMHead(CFG, model.embeddings.word_embeddings)
    params = [p for n, p in model.named_parameters() if not n.startswith("classifier")] + [p for n, p in head.named_parameters() if not n.startswith("emb.")]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 60) * max(0.05, 1 - s / steps))
    model.train(); head.train()
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        start = rng.randrange(len(corpus) - PRETRAIN_BATCH)
        seqs = corpus[start:start + PRETRAIN_BATCH]
        ids, mask, tt = batchify(seqs)
        special = (ids < 5)
        sel = (torch.rand(ids.shape, generator=g) < 0.15) & ~special
        labels = torch.where(sel, ids, torch.full_like(ids, -100))
        r = torch.rand(ids.shape, generator=g)
        inp = ids.clone()
        inp[sel & (r < 0.8)] = 4  # [MASK]
        rnd = sel & (r >= 0.8) & (r < 0.9)
        inp[rnd] = torch.randint(5, CFG["vocab"], (int(rnd.sum()),), generator=g)
        with training_precision():   # float32 weights and updates either way
            logits = head(model.hidden(inp, mask, tt)[sel])  # vocab projection only where masked
        loss = F.cross_entropy(logits.float(), labels[sel])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"mlm step {step} loss {loss.item():.3f}")
    model.eval()

def training_ids(files, with_extra):
    """Token ids of every training-split row of `files` ((rows, ids) pairs), each distinct text once;
    rows marked `extra` (adapter-only training text, data.py) only `with_extra`."""
    seen, out = set(), []
    for rows_file, ids_file in files:
        rows = [json.loads(l) for l in open(os.path.join(BUILD, rows_file), encoding="utf-8")]
        for r, ids in zip(rows, load_ids(ids_file)):
            if r.get("split", "train") == "train" and (with_extra or not r.get("extra")) and tuple(ids) not in seen:
                seen.add(tuple(ids)); out.append(ids)
    return out

def task_files(t):
    """A task's rows and their token ids in the build dir (data.py, tokenize.mjs)."""
    return f"task-{t['file']}.jsonl", f"task-{t['file']}.ids.json"

def continued_corpus():
    """The texts of stages 2, 3, …: stage 1's corpus plus the training split of every task (French, Esperanto,
    clean mail text, everyday English, review sentences), never a validation or test row, nor a row
    marked `extra`."""
    return training_ids([("corpus.jsonl", "corpus.ids.json")] +
                        [task_files(t) for t in TASKS], with_extra=False)

def focus_texts(task_id):
    """Every training-split text of one task, `extra` rows included (never a validation or test row):
    the text of a task-adaptive masked-LM stage (FOCUS=spam:1000:3, a trial)."""
    t = next(t for t in TASKS if t["id"] == task_id)
    return training_ids([task_files(t)], with_extra=True)

# ---------------------------------------------------------------- tasks
TASKS = [
    # id, file, r, alpha, rslora, rank_pattern, alpha_pattern, dtype; forms: the kinds of input
    # (data.py's `form`), each evaluated on its own; the first is the headline form.
    dict(id="spam", file="spam", r=16, alpha=32, rslora=False, rank_pattern={}, alpha_pattern={}, dtype="F16", epochs=4, lr=2e-3,
         forms=["snippet", "subject", "body", "sentence", "fortune", "everyday", "phrasebook"], threshold="val"),
    dict(id="lang", file="lang", r=8, alpha=16, rslora=False, rank_pattern={}, alpha_pattern={}, dtype="F32", epochs=5, lr=3e-3,
         forms=["phrase", "whole"]),
    dict(id="topic", file="topic", r=16, alpha=16, rslora=True, rank_pattern={}, alpha_pattern={}, dtype="F32", epochs=2,
         forms=["whole", "phrase"]),
    dict(id="es-topic", file="es-topic", r=8, alpha=16, rslora=False, rank_pattern={"value": 4}, alpha_pattern={"value": 8}, dtype="F32", epochs=3,
         forms=["whole", "phrase"]),
    dict(id="sentiment", file="sentiment", r=16, alpha=32, rslora=False, rank_pattern={}, alpha_pattern={}, dtype="F32", epochs=8, lr=3e-3,
         forms=["sentence"]),
]
ONLY = [x for x in os.environ.get("TASKS", "").split(",") if x]
# TASK_OVERRIDES='{"spam": {"epochs": 6}}': try other settings without editing TASKS (experiments)
for _t in TASKS:
    _t.update(json.loads(os.environ.get("TASK_OVERRIDES", "{}")).get(_t["id"], {}))
TARGETS = ["query", "value"]

def task_data(t):
    rows_file, ids_file = task_files(t)
    rows = [json.loads(l) for l in open(os.path.join(BUILD, rows_file), encoding="utf-8")]
    ids = load_ids(ids_file)
    labels = sorted({r["label"] for r in rows})
    lid = {l: i for i, l in enumerate(labels)}
    split = lambda s: [(ids[i], lid[r["label"]], r["text"], r["form"]) for i, r in enumerate(rows) if r["split"] == s]
    if os.environ.get("SMOKE"):
        return labels, split("train")[:256], split("val")[:256], split("test")[:256]
    return labels, split("train"), split("val"), split("test")

def lora_modules(model):
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear) and name.split(".")[-1] in TARGETS:
            yield name, m

def rank_alpha(t, name):
    short = name.split(".")[-1]
    r = t["rank_pattern"].get(short, t["r"]); a = t["alpha_pattern"].get(short, t["alpha"])
    return r, a, (a / math.sqrt(r) if t["rslora"] else a / r)

def length_batches(data, bs, rng=None):
    """Batches of similar lengths (little padding); shuffled pools when rng is given."""
    order = list(range(len(data)))
    if rng:
        rng.shuffle(order)
    pool = bs * 16 if rng else len(order)
    out = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lambda j: len(data[j][0]))
        out += [chunk[k:k + bs] for k in range(0, len(chunk), bs)]
    if rng:
        rng.shuffle(out)
    return out

@torch.no_grad()
def outputs(model, data, bs=128):
    """(logits, pooled) for every row, in data's order."""
    model.eval(); logits = [None] * len(data); pooled = [None] * len(data)
    for b in length_batches(data, bs):
        lg, pl = model(*batchify([data[j][0] for j in b]))
        for k, j in enumerate(b):
            logits[j] = lg[k]; pooled[j] = pl[k]
    return torch.stack(logits), torch.stack(pooled)

def scores(pred, data, labels, forms):
    """Accuracy, per-label recall, majority-class rate and row count for each form."""
    out = {}
    for f in forms:
        idx = [i for i, c in enumerate(data) if c[3] == f]
        if not idx:
            continue
        y = torch.tensor([data[i][1] for i in idx]); p = pred[idx]
        counts = torch.bincount(y, minlength=len(labels))
        out[f] = dict(test=len(idx), accuracy=(p == y).float().mean().item(), chance=(counts.max() / counts.sum()).item(),
                      recall={l: ((p == y) & (y == k)).sum().item() / max(1, counts[k].item()) for k, l in enumerate(labels)})
    return out

def baseline(model, labels, train, test, forms):
    """Frozen base + trained linear head (no LoRA): the base-only baseline."""
    xtr = outputs(model, train)[1]; xte = outputs(model, test)[1]
    ytr = torch.tensor([c[1] for c in train])
    head = nn.Linear(xtr.shape[1], len(labels)); opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad(); F.cross_entropy(head(xtr), ytr).backward(); opt.step()
    with torch.no_grad():
        return scores(head(xte).argmax(-1), test, labels, forms), head

def val_summary(model, val, labels, forms):
    sc = scores(outputs(model, val)[0].argmax(-1), val, labels, forms)
    return " ".join(f"{f} {s['accuracy'] * 100:.1f}" for f, s in sc.items())

@torch.no_grad()
def choose_threshold(model, t, labels, val):
    """Binary tasks with `threshold: "val"`: shift the second label's bias (the decision
    threshold on logit[1] − logit[0]) to the value that maximises the mean per-form accuracy
    on the validation rows (every form weighing the same). Chosen on val only, never on test;
    the shift is stored in the head, so what is served is what is measured."""
    lg = outputs(model, val)[0]
    margin = (lg[:, 1] - lg[:, 0]).tolist()
    y = [c[1] for c in val]
    forms = [f for f in t["forms"] if any(c[3] == f for c in val)]
    def objective(d):
        accs = []
        for f in forms:
            idx = [i for i, c in enumerate(val) if c[3] == f]
            accs.append(sum(1 for i in idx if (margin[i] + d > 0) == (y[i] == 1)) / len(idx))
        return sum(accs) / len(accs)
    cands = sorted({0.0} | {round(-m, 3) for m in margin if abs(m) <= 4})
    best = max(cands, key=lambda d: (objective(d), -abs(d)))   # ties: the smallest shift
    log(f"{t['id']} threshold on val: logit shift {best:+.3f} (mean per-form val accuracy "
        f"{objective(0.0) * 100:.1f} -> {objective(best) * 100:.1f})")
    model.classifier.bias[1] += best
    return best

def train_adapter(model, t, labels, train, val, test, probe_head):
    torch.manual_seed(SEED)
    # LP-FT: start from the linear probe's head (the base-only baseline), then tune LoRA + head
    model.classifier = nn.Linear(CFG["hidden"], len(labels))
    with torch.no_grad():
        model.classifier.weight.copy_(probe_head.weight); model.classifier.bias.copy_(probe_head.bias)
    for name, m in lora_modules(model):
        r, a, s = rank_alpha(t, name); m.enable_lora(r, s)
    for n, p in model.named_parameters():
        p.requires_grad = ("lora_" in n) or n.startswith("classifier")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.get("lr", 2e-3), weight_decay=0.0)
    rng = random.Random(SEED); bs = 32
    # balance: "form" weighs every input form the same in the loss (as the threshold's objective does)
    balance = t.get("balance") == "form"
    if balance:
        nform = collections.Counter(c[3] for c in train)
        weight = {f: len(train) / (len(nform) * n) for f, n in nform.items()}
    epoch_batches = [length_batches(train, bs, rng) for _ in range(t["epochs"])]
    steps = sum(len(b) for b in epoch_batches); step = 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))
    for ep, batches in enumerate(epoch_batches):
        # dropout: False trains with the frozen base's dropout off (eval mode; gradients still flow)
        model.train(t.get("dropout", True)); total = 0.0
        for b in batches:
            chunk = [train[j] for j in b]
            with training_precision():
                logits, _ = model(*batchify([c[0] for c in chunk]))
            logits = logits.float(); y = torch.tensor([c[1] for c in chunk])
            if balance:
                loss = (F.cross_entropy(logits, y, reduction="none") * torch.tensor([weight[c[3]] for c in chunk])).mean()
            else:
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1; total += loss.item()
        log(f"{t['id']} epoch {ep} mean loss {total / len(batches):.3f}" + (f"; val: {val_summary(model, val, labels, t['forms'])}" if val else ""))
    model.eval()
    shift = choose_threshold(model, t, labels, val) if t.get("threshold") == "val" else 0.0
    if t["dtype"] == "F16":  # the stored weights are what is served: round now, evaluate those
        with torch.no_grad():
            for p in params:
                p.copy_(p.half().float())
    if val:
        log(f"{t['id']} final val: {val_summary(model, val, labels, t['forms'])}")
    return scores(outputs(model, test)[0].argmax(-1), test, labels, t["forms"]), shift

# ---------------------------------------------------------------- writers
def write_adapter(model, t, labels):
    d = os.path.join(ROOT, "adapters", t["id"]); os.makedirs(d, exist_ok=True)
    tensors = {}
    for name, m in lora_modules(model):
        tensors[f"base_model.model.{name}.lora_A.weight"] = m.lora_A
        tensors[f"base_model.model.{name}.lora_B.weight"] = m.lora_B
    tensors["base_model.model.classifier.weight"] = model.classifier.weight
    tensors["base_model.model.classifier.bias"] = model.classifier.bias
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors, t["dtype"])
    cfg = {
        "alpha_pattern": t["alpha_pattern"], "auto_mapping": None, "base_model_name_or_path": BASE_NAME,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": t["alpha"], "lora_dropout": 0.1, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": ["classifier"], "peft_type": "LORA", "r": t["r"], "rank_pattern": t["rank_pattern"],
        "revision": None, "target_modules": TARGETS, "task_type": "SEQ_CLS", "use_dora": False,
        "use_rslora": t["rslora"], "peft_version": "0.13.2",
        "id2label": {str(i): l for i, l in enumerate(labels)},
    }
    json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"), indent=2, ensure_ascii=False)

@torch.no_grad()
def merged_copy(model):
    """The naive way: W + s·B·A baked into a plain model (for the merged golden)."""
    import copy
    m = copy.deepcopy(model)
    for name, lin in lora_modules(m):
        if hasattr(lin, "lora_A"):
            lin.weight += lin.scale * (lin.lora_B @ lin.lora_A); lin.disable_lora()
    return m

def export_plain(model, path):
    model.eval()
    ids, mask, tt = batchify([[2, 10, 11, 3], [2, 12, 3]])
    torch.onnx.export(model, (ids, mask, tt), path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits", "sentence_embedding"], opset_version=17, do_constant_folding=True,
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                    "token_type_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"},
                                    "sentence_embedding": {0: "batch"}})

def load_base_from_onnx(model, g):
    """Reload the pretrained base from a plain export's graph (REUSE_BASE=1, RESUME_FROM):
    adapters can be retrained without repeating the masked-LM pretraining."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    state = model.state_dict()
    for name in list(state):
        if name in inits:
            state[name] = torch.from_numpy(inits[name].copy())
    for n in g.node:
        if n.op_type == "MatMul" and n.name.endswith("/MatMul") and n.input[1] in inits:
            mod = n.name[1:].rsplit("/", 1)[0].replace("/", ".")
            if mod + ".weight" in state:
                state[mod + ".weight"] = torch.from_numpy(inits[n.input[1]].T.copy())
    model.load_state_dict(state)

def onnx_shape(g):
    """(layers, width) of a plain export's graph: a grown base has more layers than CFG's default,
    and the committed base before 6x384 was 4x256."""
    layers = len({i.name.split(".")[2] for i in g.initializer if i.name.startswith("encoder.layer.")})
    emb = next(i for i in g.initializer if i.name == "embeddings.word_embeddings.weight")
    return layers, emb.dims[1]

def grow(model, layer_map):
    """A deeper copy of `model`: its layer i starts as a copy of the old layer layer_map[i]."""
    old = model.encoder.layer
    CFG["layers"] = len(layer_map)
    bigger = DemoBert(CFG)
    bigger.embeddings.load_state_dict(model.embeddings.state_dict())
    for i, j in enumerate(layer_map):
        bigger.encoder.layer[i].load_state_dict(old[j].state_dict())
    return bigger

def main():
    start_from = os.path.join(ROOT, "models", "demo-export", "model.onnx") if os.environ.get("REUSE_BASE") else \
        os.environ.get("RESUME_FROM", "@").rsplit("@", 1)[0]
    start_graph = None
    if start_from:
        import onnx
        start_graph = onnx.load(start_from).graph   # read once: its layer count, then its weights
        set_shape(*onnx_shape(start_graph))
    model = DemoBert(CFG)
    init_rng = torch.get_rng_state()   # every later stage starts from this torch RNG state (below)
    exp_dir = os.path.join(ROOT, "models", "demo-export"); os.makedirs(exp_dir, exist_ok=True)
    if os.environ.get("REUSE_BASE"):
        load_base_from_onnx(model, start_graph)
        model.eval()
        log("base reloaded from the committed export")
    else:
        done = 0   # RESUME_FROM=<plain export .onnx>@<stage>: that file is the base after that stage
        if os.environ.get("RESUME_FROM"):
            path, done = os.environ["RESUME_FROM"].rsplit("@", 1); done = int(done)
            load_base_from_onnx(model, start_graph)
            log(f"base after stage {done} loaded from {path}")
        else:
            pretrain(model, load_ids("corpus.ids.json"), PRETRAIN_STEPS, SEED)
            done = 1
        if done < 1 + len(CONTINUE_STEPS):
            more = continued_corpus()
            for k in range(done + 1, 2 + len(CONTINUE_STEPS)):
                log(f"stage {k}: {CONTINUE_STEPS[k - 2]} steps on {len(more)} texts")
                # the same RNG state (MLM head init, dropout) whether the stage runs in a row or is resumed from an export
                torch.set_rng_state(init_rng)
                pretrain(model, more, CONTINUE_STEPS[k - 2], SEED + k - 1)
        if os.environ.get("GROW"):
            layer_map, steps = os.environ["GROW"].split(":")
            model = grow(model, [int(x) for x in layer_map.split(",")])
            log(f"grown to {CFG['layers']} layers ({layer_map}); {steps} masked-LM steps")
            torch.manual_seed(SEED)
            pretrain(model, continued_corpus(), int(steps), SEED + 10)
        if os.environ.get("FOCUS"):
            task_id, steps, times = (os.environ["FOCUS"].split(":") + ["3"])[:3]
            more = continued_corpus() + focus_texts(task_id) * int(times)
            log(f"focus stage on {task_id}'s training text (x{times}): {steps} masked-LM steps on {len(more)} texts")
            torch.manual_seed(SEED)
            pretrain(model, more, int(steps), SEED + 20)
    for n, p in model.named_parameters():
        p.requires_grad = False
    if not os.environ.get("REUSE_BASE"):
        export_plain(model, os.path.join(exp_dir, "model.onnx"))
        log("exported plain base")
    base_state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    golden = {"base_model": BASE_NAME, "max_length": MAXLEN, "adapters": {}}
    report = {"base_model": BASE_NAME, "pretrain_steps": PRETRAIN_STEPS, "continue_steps": CONTINUE_STEPS, "tasks": {}}
    if os.environ.get("GROW"):
        report["grow"] = os.environ["GROW"]
    if os.environ.get("FOCUS"):
        report["focus"] = os.environ["FOCUS"]
    report.update(bf16=BF16, shape=f"{CFG['layers']}x{CFG['hidden']}")
    golden_path = os.path.join(ROOT, "test", "fixtures", "golden.json")
    old_golden, old_report = {}, {}
    if ONLY:  # keep what is committed for the adapters not retrained now
        old_golden = json.load(open(golden_path, encoding="utf-8"))["adapters"]
        old_report = json.load(open(os.path.join(ROOT, "docs", "demo-model.json")))["tasks"]
    probe_ids = None
    for t in TASKS:
        if ONLY and t["id"] not in ONLY:
            if t["id"] in old_report:
                report["tasks"][t["id"]] = old_report[t["id"]]; golden["adapters"][t["id"]] = old_golden[t["id"]]
            continue
        torch.manual_seed(SEED)  # each adapter's result depends on its own task only (TASKS=… reproduces it)
        labels, train, val, test = task_data(t)
        model.load_state_dict(base_state, strict=False)
        for _, m in lora_modules(model): m.disable_lora()
        base_scores, probe_head = baseline(model, labels, train, test, t["forms"])
        log(t["id"], "base only", json.dumps(base_scores))
        forms, shift = train_adapter(model, t, labels, train, val, test, probe_head)
        for f, sc in forms.items():
            sc["base_only_accuracy"] = base_scores[f]["accuracy"]; sc["base_only_recall"] = base_scores[f]["recall"]
            sc["train"] = sum(1 for c in train if c[3] == f)
        head = forms[t["forms"][0]]
        report["tasks"][t["id"]] = dict(labels=labels, train=len(train), test=len(test), headline_form=t["forms"][0],
                                        accuracy=head["accuracy"], base_only_accuracy=head["base_only_accuracy"],
                                        chance=head["chance"], forms=forms, epochs=t["epochs"],
                                        r=t["r"], alpha=t["alpha"], use_rslora=t["rslora"], rank_pattern=t["rank_pattern"],
                                        alpha_pattern=t["alpha_pattern"], lr=t.get("lr", 2e-3), dtype=t["dtype"],
                                        **(dict(val=len(val), threshold_shift=round(shift, 3)) if t.get("threshold") else {}))
        log(t["id"], json.dumps(report["tasks"][t["id"]]))
        write_adapter(model, t, labels)
        # goldens: held-out rows of every form, round-robin
        by_form = [[c for c in test if c[3] == f] for f in t["forms"]]
        sample = [by_form[i % len(by_form)][i // len(by_form)] for i in range(6)]
        seqs = [c[0] for c in sample]
        with torch.no_grad():
            logits, pooled = model(*batchify(seqs))
            mlogits, mpooled = merged_copy(model)(*batchify(seqs))
        golden["adapters"][t["id"]] = dict(texts=[c[2] for c in sample], ids=seqs, logits=logits.tolist(),
                                           merged_logits=mlogits.tolist(), embeddings=pooled.tolist(), labels=labels)
        probe_ids = probe_ids or (seqs, [c[2] for c in sample])
        for _, m in lora_modules(model): m.disable_lora()
    if probe_ids is None:  # no adapter retrained: the base's golden inputs stay as committed
        g = json.load(open(golden_path, encoding="utf-8"))["base"]
        probe_ids = (g["ids"], g["texts"])
    model.load_state_dict(base_state, strict=False)
    with torch.no_grad():
        _, pooled = model(*batchify(probe_ids[0]))
    golden["base"] = dict(texts=probe_ids[1], ids=probe_ids[0], embeddings=pooled.tolist())
    os.makedirs(os.path.join(ROOT, "test", "fixtures"), exist_ok=True)
    json.dump(golden, open(golden_path, "w"), ensure_ascii=False)
    report["seconds"] = round(time.time() - T0)
    json.dump(report, open(os.path.join(BUILD, "report.json"), "w"), indent=2)
    log("done", json.dumps(report, indent=1))

if __name__ == "__main__":
    main()
