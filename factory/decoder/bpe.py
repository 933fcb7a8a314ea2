"""Byte-level BPE (GPT-2 style) trained here, written as a Hugging Face `tokenizer.json`.

train: python3 factory/decoder/bpe.py train <descriptions.jsonl> <tokenizer.json> <vocab size>
The serving side reads the file with @huggingface/tokenizers; `encode()` below is an
independent reference used to write the parity fixture the TypeScript tests check."""
import collections, heapq, json, sys
import regex

# The pattern Hugging Face's ByteLevel pre-tokenizer uses (use_regex: true).
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))

B2U = bytes_to_unicode()

def pretokens(text):
    return ["".join(B2U[b] for b in m.encode("utf-8")) for m in PATTERN.findall(text)]

def train(texts, size):
    words = collections.Counter()
    for t in texts:
        words.update(pretokens(t))
    alphabet = sorted(B2U.values())
    vocab = SPECIALS + alphabet
    syms = [list(w) for w in words]
    freq = [words[w] for w in words]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, s in enumerate(syms):
        for a, b in zip(s, s[1:]):
            pairs[(a, b)] += freq[i]
            where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(vocab) < size and heap:
        c, p = heapq.heappop(heap)
        if -c != pairs.get(p, 0) or -c <= 0:
            continue  # stale entry
        if -c < 2:
            break
        merges.append(p)
        new = p[0] + p[1]
        vocab.append(new)
        touched = collections.Counter()
        for i in sorted(where.pop(p, ())):
            s = syms[i]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] -= freq[i]; touched[(a, b)] += 1
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == p[0] and s[j + 1] == p[1]:
                    out.append(new); j += 2
                else:
                    out.append(s[j]); j += 1
            syms[i] = out
            for a, b in zip(out, out[1:]):
                pairs[(a, b)] += freq[i]; where[(a, b)].add(i); touched[(a, b)] += 1
        pairs.pop(p, None)
        for q in touched:
            if pairs.get(q, 0) > 0:
                heapq.heappush(heap, (-pairs[q], q))
    return vocab, merges

def tokenizer_json(vocab, merges):
    ids = {t: i for i, t in enumerate(vocab)}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in SPECIALS],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": ids, "merges": [f"{a} {b}" for a, b in merges]},
    }

class Encoder:
    """Reference BPE encoder (lowest-rank merge first, as Hugging Face's BPE model does)."""
    def __init__(self, tok):
        self.ids = tok["model"]["vocab"]
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(tok["model"]["merges"])}
        self.special = {t["content"]: t["id"] for t in tok["added_tokens"]}
        self.split = regex.compile("(" + "|".join(regex.escape(s) for s in self.special) + ")")
    def word(self, w):
        s = list(w)
        while len(s) > 1:
            best = min(((self.ranks.get((a, b), 1 << 30), k) for k, (a, b) in enumerate(zip(s, s[1:]))))
            if best[0] == 1 << 30:
                break
            k = best[1]
            s = s[:k] + [s[k] + s[k + 1]] + s[k + 2:]
        return [self.ids[x] for x in s]
    def encode(self, text):
        out = []
        for part in self.split.split(text):
            if part in self.special:
                out.append(self.special[part])
            elif part:
                for w in pretokens(part):
                    out.extend(self.word(w))
        return out

def main():
    cmd = sys.argv[1]
    if cmd == "train":
        src, dst, size = sys.argv[2], sys.argv[3], int(sys.argv[4])
        texts = []
        for line in open(src, encoding="utf-8"):
            r = json.loads(line)
            if r["split"] != "train":
                continue
            texts += [r["en_short"], r["en_long"]] + ([r["it_short"], r["it_long"]] if "it_short" in r else [])
        vocab, merges = train(texts, size)
        json.dump(tokenizer_json(vocab, merges), open(dst, "w", encoding="utf-8"), ensure_ascii=False)
        print("vocab", len(vocab), "merges", len(merges), "texts", len(texts))
    elif cmd == "encode":  # python3 bpe.py encode tokenizer.json texts.json out.json
        enc = Encoder(json.load(open(sys.argv[2], encoding="utf-8")))
        texts = json.load(open(sys.argv[3], encoding="utf-8"))
        json.dump([{"text": t, "ids": enc.encode(t)} for t in texts], open(sys.argv[4], "w", encoding="utf-8"), ensure_ascii=False)

if __name__ == "__main__":
    main()
