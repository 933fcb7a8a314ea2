"""Collect the decoder corpus: Debian bookworm's package descriptions in English and Italian
(`Translation-en`, `Translation-it`), paired by Description-md5, each with its source package.

Needs `apt-get update -o Acquire::Languages=en,it` first (it fetches both files into
/var/lib/apt/lists). Splits are made by a stable hash of the *source* package name before
anything is trained, so no test package appears in pretraining or in any adapter's training:
train 90 %, validation 5 %, test 5 %.

usage: python3 factory/decoder/data.py <out dir>   → <out>/descriptions.jsonl, <out>/data-report.json"""
import glob, hashlib, json, os, re, subprocess, sys

LISTS = "/var/lib/apt/lists"
OUT = sys.argv[1] if len(sys.argv) > 1 else "build/decoder"

def read_lz4(path):
    return subprocess.run(["lz4cat", path], capture_output=True, check=True).stdout.decode("utf-8", "replace")

def stanzas(text):
    for block in text.split("\n\n"):
        if block.strip():
            yield block

def parse_translation(text, lang):
    """Description-md5 → (package, short, long) where long keeps paragraphs as '\n'."""
    out = {}
    for block in stanzas(text):
        pkg = md5 = short = None
        long_lines = []
        key = f"Description-{lang}:"
        for line in block.split("\n"):
            if line.startswith("Package:"):
                pkg = line[8:].strip()
            elif line.startswith("Description-md5:"):
                md5 = line[16:].strip()
            elif line.startswith(key):
                short = line[len(key):].strip()
            elif line.startswith(" ") and short is not None:
                long_lines.append(line[1:])
        if pkg and md5 and short:
            out.setdefault(md5, (pkg, short, long_text(long_lines)))
    return out

def long_text(lines):
    paras, cur = [], []
    for l in lines:
        if l.strip() == ".":
            if cur: paras.append(" ".join(cur)); cur = []
        else:
            cur.append(l.strip())
    if cur: paras.append(" ".join(cur))
    return "\n".join(re.sub(r"\s+", " ", p).strip() for p in paras if p.strip())

def source_map():
    """binary package → source package name (Packages 'Source:' field, version stripped)."""
    m = {}
    for path in sorted(glob.glob(f"{LISTS}/*_dists_bookworm_main_binary-*_Packages*")):
        text = read_lz4(path) if path.endswith(".lz4") else open(path, encoding="utf-8").read()
        for block in stanzas(text):
            pkg = src = None
            for line in block.split("\n"):
                if line.startswith("Package:"): pkg = line[8:].strip()
                elif line.startswith("Source:"): src = line[7:].strip().split(" ")[0]
            if pkg: m[pkg] = src or pkg
    return m

def split_of(source):
    h = int(hashlib.sha256(("adapterhost-decoder:" + source).encode()).hexdigest()[:8], 16) % 100
    return "test" if h < 5 else "validation" if h < 10 else "train"

def main():
    os.makedirs(OUT, exist_ok=True)
    def one(lang):
        files = sorted(glob.glob(f"{LISTS}/*_dists_bookworm_main_i18n_Translation-{lang}*"))
        if not files:
            sys.exit(f"no Translation-{lang} in {LISTS}: run apt-get update -o Acquire::Languages=en,it")
        return parse_translation(read_lz4(files[0]), lang)
    en, it, src = one("en"), one("it"), source_map()
    rows, counts = [], {}
    for md5, (pkg, short, long) in sorted(en.items()):
        source = src.get(pkg, pkg)
        r = {"pkg": pkg, "source": source, "split": split_of(source), "en_short": short, "en_long": long}
        if md5 in it:
            r["it_short"], r["it_long"] = it[md5][1], it[md5][2]
        rows.append(r)
        k = r["split"] + ("+it" if "it_short" in r else "")
        counts[k] = counts.get(k, 0) + 1
    with open(f"{OUT}/descriptions.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    report = {"descriptions_en": len(en), "descriptions_it": len(it), "paired_rows": len(rows), "by_split": counts}
    json.dump(report, open(f"{OUT}/data-report.json", "w"), indent=1)
    print(json.dumps(report))

if __name__ == "__main__":
    main()
