"""Build a WordPiece vocabulary from the pretraining corpus and write it as a Hugging Face
`tokenizer.json` (BertNormalizer lowercase without accent stripping, BertPreTokenizer,
WordPiece with `##` continuations, [CLS] … [SEP] template)."""
import collections, json, sys, unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

def is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")

def basic_tokenize(text):
    out, cur = [], []
    for ch in text.lower():
        if ch.isspace():
            if cur: out.append("".join(cur)); cur = []
        elif is_punct(ch):
            if cur: out.append("".join(cur)); cur = []
            out.append(ch)
        else:
            cur.append(ch)
    if cur: out.append("".join(cur))
    return out

def main(corpus_path, out_path, size):
    words = collections.Counter()
    for line in open(corpus_path, encoding="utf-8"):
        words.update(basic_tokenize(json.loads(line)["text"]))
    chars = collections.Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    alphabet = sorted(ch for ch, c in chars.items() if c >= 20)
    cands = collections.Counter()
    for w, c in words.items():
        if c < 3 or len(w) > 30:
            continue
        n = len(w)
        for L in range(2, min(n, 12) + 1):
            cands[w[:L]] += c * (L - 1) if L < n else c * L
        for s in range(1, n):
            for L in range(2, min(n - s, 8) + 1):
                cands["##" + w[s:s + L]] += c * (L - 1)
    vocab = list(SPECIALS) + alphabet + ["##" + ch for ch in alphabet]
    seen = set(vocab)
    for piece, _ in cands.most_common():
        if len(vocab) >= size:
            break
        if piece not in seen and all(ch in chars for ch in piece.replace("##", "", 1)):
            vocab.append(piece); seen.add(piece)
    ids = {t: i for i, t in enumerate(vocab)}
    special = lambda t: {"id": ids[t], "content": t, "single_word": False, "lstrip": False,
                         "rstrip": False, "normalized": False, "special": True}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(t) for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": False, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ["[CLS]", "[SEP]"]}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(tok, fh, ensure_ascii=False)
    print("vocab", len(vocab), "alphabet", len(alphabet))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 6000)
