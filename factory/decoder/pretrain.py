"""Pretrain the demo decoder (causal LM) on the train split of the package descriptions.

usage: python3 factory/decoder/pretrain.py <build dir> [phase]
Two phases (build.sh runs both; each is seeded):
  1  reads <build>/pretrain.ids.json (one document per language), a stream cut into 256-token
     windows, 600 steps from random weights           → <build>/base-phase1.pt
  2  reads <build>/pretrain2.ids.json (one bilingual document per package), whole documents packed
     into 256-token rows (padding masked), continues from base-phase1.pt  → <build>/base.pt
Each writes <build>/pretrain-report[-phase2].json. PRETRAIN_STEPS overrides a phase's steps;
THREADS sets torch's threads."""
import json, math, os, random, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(__file__))
from llama import CFG, LlamaForCausalLM

BUILD = sys.argv[1]
PHASE = int(sys.argv[2]) if len(sys.argv) > 2 else 1
SEED = 4321 + (PHASE - 1)
STEPS = int(os.environ.get("PRETRAIN_STEPS", "600" if PHASE == 1 else "2000"))
DOCS, INIT, OUT, REPORT = (("pretrain.ids.json", None, "base-phase1.pt", "pretrain-report.json") if PHASE == 1 else
                           ("pretrain2.ids.json", "base-phase1.pt", "base.pt", "pretrain-report-phase2.json"))
BATCH, SEQ = 16, 256
LR, WARMUP = 2e-3, 100
# One torch (OpenMP) thread and OpenBLAS threads for the GEMMs: two pools on two cores thrash
# (measured: 3x the CPU time per step). build.sh sets OPENBLAS_NUM_THREADS.
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
torch.manual_seed(SEED)
T0 = time.time()

def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)

def stream(docs, rng):
    order = list(range(len(docs)))
    rng.shuffle(order)
    out = []
    for i in order:
        out += [1] + docs[i] + [2]  # <|bos|> … <|eos|>
    return torch.tensor(out, dtype=torch.long)

def packed(docs, rng, open_rows=256):
    """Whole documents (<|bos|> … <|eos|>) packed first-fit into rows of SEQ + 1 tokens, the rest
    padded with 0 (the loss skips it); a document longer than a row is cut to it."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    rows, fill = [], []          # fill: indices of rows still open
    for i in order:
        d = ([1] + docs[i] + [2])[: SEQ + 1]
        for j in fill:
            if len(rows[j]) + len(d) <= SEQ + 1:
                rows[j] += d
                break
        else:
            rows.append(list(d)); fill.append(len(rows) - 1)
            if len(fill) > open_rows:
                fill.pop(0)
    out = torch.zeros((len(rows), SEQ + 1), dtype=torch.long)
    for j, r in enumerate(rows):
        out[j, :len(r)] = torch.tensor(r)
    return out

def windows(toks):
    """A stream as rows of SEQ + 1 tokens (the last token of a row starts the next)."""
    k = (len(toks) - 1) // SEQ
    return torch.stack([toks[i * SEQ: i * SEQ + SEQ + 1] for i in range(k)])

def xy(rows):
    """Inputs, labels (padding → -100) and the attention mask of a batch of rows."""
    x, y = rows[:, :-1], rows[:, 1:].clone()
    y[y == 0] = -100
    return x, y, (x != 0).long()  # every row starts with <|bos|>, so no row is all padding

@torch.no_grad()
def evaluate(model, rows, n_batches=20):
    model.eval()
    total, count = 0.0, 0
    for j in range(min(n_batches * BATCH, len(rows)) // BATCH):
        x, y, mask = xy(rows[j * BATCH: (j + 1) * BATCH])
        logits, _ = model.step(x, mask, torch.arange(SEQ).expand(x.shape[0], SEQ))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += (y != -100).sum().item()
    model.train()
    return total / max(count, 1)

def main():
    data = json.load(open(os.path.join(BUILD, DOCS)))
    rng = random.Random(SEED)
    if PHASE == 1:
        train = windows(stream(data["train"], rng))
        valid = windows(stream(data["validation"], random.Random(SEED + 1)))
    else:
        train = packed(data["train"], rng)
        valid = packed(data["validation"], random.Random(SEED + 1))
    ntokens = int((train != 0).sum())
    nchunks = len(train)
    log(f"phase {PHASE}: train tokens {ntokens} ({nchunks} rows of {SEQ}), validation rows {len(valid)}, steps {STEPS}")
    model = LlamaForCausalLM(CFG)
    if INIT:
        model.load_state_dict(torch.load(os.path.join(BUILD, INIT)))
        log(f"continuing from {INIT}; validation loss before {evaluate(model, valid):.4f}")
    nparams = sum(p.numel() for p in model.parameters())
    log(f"parameters {nparams}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / STEPS)))))
    g = torch.Generator().manual_seed(SEED)
    model.train()
    pos = torch.arange(SEQ).expand(BATCH, SEQ)
    for step in range(STEPS):
        idx = torch.randint(0, nchunks, (BATCH,), generator=g)
        x, y, mask = xy(train[idx])
        logits, _ = model.step(x, mask, pos)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
        if step % 25 == 0 or step == STEPS - 1:
            log(f"step {step} loss {loss.item():.3f} lr {sched.get_last_lr()[0]:.2e}")
        if (step + 1) % 200 == 0:
            torch.save(model.state_dict(), os.path.join(BUILD, "base.partial.pt"))
    vloss = evaluate(model, valid)
    torch.save(model.state_dict(), os.path.join(BUILD, OUT))
    report = dict(phase=PHASE, init=INIT, parameters=nparams, steps=STEPS, batch=BATCH, seq=SEQ, tokens_seen=STEPS * BATCH * SEQ,
                  train_tokens=ntokens, validation_loss=round(vloss, 4), validation_ppl=round(math.exp(vloss), 2),
                  seconds=round(time.time() - T0), config=CFG)
    json.dump(report, open(os.path.join(BUILD, REPORT), "w"), indent=1)
    log("done", json.dumps(report))

if __name__ == "__main__":
    main()
