"""Pretrain the demo decoder (causal LM) on the train split of the package descriptions.

usage: python3 factory/decoder/pretrain.py <build dir>
reads  <build>/pretrain.ids.json  {"train": [[ids]...], "validation": [[ids]...]} (Node tokenizer ids)
writes <build>/base.pt (state dict), <build>/pretrain-report.json
Seeded; PRETRAIN_STEPS (default below) and THREADS may be set in the environment."""
import json, math, os, random, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(__file__))
from llama import CFG, LlamaForCausalLM

BUILD = sys.argv[1]
SEED = 4321
STEPS = int(os.environ.get("PRETRAIN_STEPS", "600"))
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

def chunks(toks, n):
    k = (len(toks) - 1) // n
    return toks[: k * n + 1], k

@torch.no_grad()
def evaluate(model, toks, n_batches=20):
    model.eval()
    total, count = 0.0, 0
    k = (len(toks) - 1) // SEQ
    for j in range(min(n_batches * BATCH, k) // BATCH):
        idx = torch.arange(j * BATCH, (j + 1) * BATCH)
        x = torch.stack([toks[i * SEQ: i * SEQ + SEQ] for i in idx])
        y = torch.stack([toks[i * SEQ + 1: i * SEQ + SEQ + 1] for i in idx])
        logits, _ = model.step(x, torch.ones_like(x), torch.arange(SEQ).expand(x.shape[0], SEQ))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / max(count, 1)

def main():
    data = json.load(open(os.path.join(BUILD, "pretrain.ids.json")))
    rng = random.Random(SEED)
    train = stream(data["train"], rng)
    valid = stream(data["validation"], random.Random(SEED + 1))
    nchunks = (len(train) - 1) // SEQ
    log(f"train tokens {len(train)} ({nchunks} chunks of {SEQ}), validation tokens {len(valid)}, steps {STEPS}")
    model = LlamaForCausalLM(CFG)
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
        x = torch.stack([train[i * SEQ: i * SEQ + SEQ] for i in idx])
        y = torch.stack([train[i * SEQ + 1: i * SEQ + SEQ + 1] for i in idx])
        logits, _ = model.step(x, torch.ones_like(x), pos)
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
    torch.save(model.state_dict(), os.path.join(BUILD, "base.pt"))
    report = dict(parameters=nparams, steps=STEPS, batch=BATCH, seq=SEQ, tokens_seen=STEPS * BATCH * SEQ,
                  train_tokens=len(train), validation_loss=round(vloss, 4), validation_ppl=round(math.exp(vloss), 2),
                  seconds=round(time.time() - T0), config=CFG)
    json.dump(report, open(os.path.join(BUILD, "pretrain-report.json"), "w"), indent=1)
    log("done", json.dumps(report))

if __name__ == "__main__":
    main()
