#!/usr/bin/python3
"""A CLIP-format byte-level BPE vocabulary, learned from the demo model's captions, and the
CLIP tokenizer that reads it.

File format (that of OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz, so vksd's C++ CLIP tokenizer
loads it unchanged): gzip'ed UTF-8 text, the first line a version header, then one merge
"a b" per line in priority order; symbols are bytes mapped to printable characters by CLIP's
bytes_to_unicode() and a word's last symbol carries the suffix "</w>". The file has no trailing
newline, so a reader that takes "every line after the header" (CLIP takes lines 1..48894) gets
exactly the merges and no empty one.

Token ids (as CLIP builds them): the 256 byte symbols in bytes_to_unicode() order, the same 256
with "</w>", one token per merge (its two symbols joined), then <|startoftext|> and
<|endoftext|>: vocab_size = 512 + merges + 2, bos = vocab_size - 2, eos = vocab_size - 1.
SD 1.x input: [bos] + ids[:75] + [eos], padded to 77 with eos.

Usage:
  /usr/bin/python3 weights/bpe.py learn [--merges 2000]   # weights/data/captions.txt -> weights/data/bpe_vocab.txt.gz
  /usr/bin/python3 weights/bpe.py selftest                # encoder vs the reference CLIP token ids
  /usr/bin/python3 weights/bpe.py encode "red apple"      # ids with the learned vocabulary
"""
import argparse
import collections
import gzip
import html
import io
import json
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
DEFAULT_VOCAB = os.path.join(DATA, "bpe_vocab.txt.gz")
CONTEXT_LENGTH = 77
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    """CLIP/GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clean(text):
    """CLIP's basic_clean + whitespace_clean + lower-casing (ftfy.fix_text omitted: identity on
    well-formed text)."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _is_letter(c):
    return unicodedata.category(c)[0] == "L"


def _is_number(c):
    return unicodedata.category(c)[0] == "N"


def pretokenize(text):
    """Split like CLIP's pattern
        <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
    (alternatives tried in order at each position, as a regex findall does)."""
    out, i, n = [], 0, len(text)
    while i < n:
        hit = next((s for s in (SOT, EOT) + _CONTRACTIONS if text.startswith(s, i)), None)
        c = text[i]
        if hit:
            j = i + len(hit)
        elif _is_letter(c):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
        elif _is_number(c):
            j = i + 1
        elif not c.isspace():
            j = i + 1
            while j < n and not (text[j].isspace() or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
        else:
            i += 1
            continue
        out.append(text[i:j])
        i = j
    return out


def word_symbols(word, byte_encoder):
    """A pre-token as BPE symbols: its UTF-8 bytes as characters, '</w>' on the last."""
    chars = [byte_encoder[b] for b in word.encode("utf-8")]
    chars[-1] += "</w>"
    return tuple(chars)


# ----------------------------------------------------------------------------------- learning

def learn(words_freq, num_merges, min_freq=2):
    """Sennrich BPE: repeatedly merge the most frequent adjacent symbol pair (ties broken by the
    pair's text, so the result is deterministic)."""
    words = {w: f for w, f in words_freq.items()}
    merges = []
    while len(merges) < num_merges:
        pairs = collections.Counter()
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += f
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < min_freq:
            break
        a, b = best[0]
        merges.append((a, b))
        merged = {}
        for w, f in words.items():
            if len(w) > 1:
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                        out.append(a + b)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                w = tuple(out)
            merged[w] = merged.get(w, 0) + f
        words = merged
    return merges


def write_vocab(path, merges, header):
    body = "\n".join([header] + [f"{a} {b}" for a, b in merges]).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:  # reproducible bytes
        g.write(body)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


# ----------------------------------------------------------------------------------- encoding

class ClipTokenizer:
    """CLIP's SimpleTokenizer over any vocabulary file in its format."""

    def __init__(self, path=DEFAULT_VOCAB):
        self.byte_encoder = bytes_to_unicode()
        lines = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
        if any(len(m) != 2 for m in merges):
            raise ValueError(f"{path}: a merge line is not two symbols")
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        if len(self.encoder) != len(vocab):
            raise ValueError(f"{path}: duplicate tokens")
        self.decoder = vocab
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.num_merges = len(merges)
        self.vocab_size = len(vocab)
        self.bos, self.eos = self.encoder[SOT], self.encoder[EOT]
        self.cache = {SOT: [SOT], EOT: [EOT]}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = word_symbols_str(token)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            a, b = best
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode(self, text):
        """BPE ids of `text`, without start/end tokens."""
        ids = []
        for tok in pretokenize(clean(text)):
            if tok in (SOT, EOT):
                ids.append(self.encoder[tok])
                continue
            ids += [self.encoder[s] for s in self.bpe("".join(self.byte_encoder[b] for b in tok.encode("utf-8")))]
        return ids

    def ids77(self, text):
        """The SD 1.x text encoder input: [bos] + ids[:75] + [eos], padded with eos to 77."""
        ids = [self.bos] + self.encode(text)[:CONTEXT_LENGTH - 2] + [self.eos]
        return ids + [self.eos] * (CONTEXT_LENGTH - len(ids))

    def decode(self, ids):
        byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(byte_decoder[c] for c in text.replace("</w>", " ") if c in byte_decoder).decode("utf-8", "replace")


def word_symbols_str(token):
    """`token` is already byte-encoded text: split into characters, '</w>' on the last."""
    chars = list(token)
    chars[-1] += "</w>"
    return chars


# ----------------------------------------------------------------------------------- commands

def cmd_learn(args):
    with open(args.captions, encoding="utf-8") as f:
        captions = sorted(set(line.rstrip("\n") for line in f if line.strip()))
    be = bytes_to_unicode()
    freq = collections.Counter()
    for c in captions:
        for tok in pretokenize(clean(c)):
            freq[word_symbols(tok, be)] += 1
    merges = learn(freq, args.merges)
    write_vocab(args.out, merges, f"#version: 0.2 vksd demo BPE, {len(merges)} merges learned from "
                                  f"{len(captions)} emoji captions")
    tok = ClipTokenizer(args.out)
    lens = [len(tok.encode(c)) for c in captions]
    print(f"{len(freq)} distinct words, {len(merges)} merges -> {args.out}")
    print(f"vocab_size {tok.vocab_size} (bos {tok.bos}, eos {tok.eos}); caption tokens mean "
          f"{sum(lens) / len(lens):.1f}, max {max(lens)} (context {CONTEXT_LENGTH - 2})")
    for p in ["red apple", "waving hand, dark skin tone, google style"]:
        print(f"  {p!r}: {tok.encode(p)} = {[tok.decoder[i] for i in tok.encode(p)]}")


def cmd_selftest(args):
    """The encoder must reproduce the OpenAI tokenizer's ids with the original vocabulary."""
    tok = ClipTokenizer(args.clip_vocab)
    assert (tok.vocab_size, tok.bos, tok.eos) == (49408, 49406, 49407), (tok.vocab_size, tok.bos, tok.eos)
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    bad = 0
    for c in cases:
        ok = tok.encode(c["prompt"]) == c["bpe_ids"] and tok.ids77(c["prompt"]) == c["ids_77_sd1"]
        bad += not ok
        if not ok:
            print("MISMATCH", repr(c["prompt"]), tok.encode(c["prompt"]), c["bpe_ids"])
    # The pre-tokenizer against CLIP's pattern on the tricky cases (expected splits by hand from
    # the pattern's alternation order).
    split_cases = {
        "it's a dog's life!!": ["it", "'s", "a", "dog", "'s", "life", "!!"],
        "4k, 12x": ["4", "k", ",", "1", "2", "x"],
        "!'s <|endoftext|>é": ["!'", "s", "<|endoftext|>", "é"],
        "we'll they're": ["we", "'ll", "they", "'re"],
    }
    for text, want in split_cases.items():
        got = pretokenize(clean(text))
        if got != want:
            bad += 1
            print("SPLIT MISMATCH", repr(text), got, want)
    if os.path.exists(DEFAULT_VOCAB):
        demo = ClipTokenizer(DEFAULT_VOCAB)
        raw = gzip.open(DEFAULT_VOCAB).read()
        assert not raw.endswith(b"\n"), "vocabulary must not end with a newline"
        for p in ["red apple, food & drink, twitter style", "Piñata!", "zürich 2024"]:
            ids = demo.encode(p)  # any text encodes (byte fallback) and decodes back
            assert all(0 <= i < demo.vocab_size - 2 for i in ids)
            assert demo.decode(ids).replace(" ", "") == clean(p).replace(" ", ""), (p, demo.decode(ids))
        print(f"demo vocabulary {DEFAULT_VOCAB}: vocab_size {demo.vocab_size}")
    print(f"{len(cases)} reference prompts, {len(split_cases)} split cases: {'OK' if not bad else f'{bad} FAILED'}")
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("learn")
    a.add_argument("--captions", default=os.path.join(DATA, "captions.txt"))
    a.add_argument("--merges", type=int, default=2000)
    a.add_argument("--out", default=DEFAULT_VOCAB)
    a.set_defaults(fn=cmd_learn)
    s = sub.add_parser("selftest")
    s.add_argument("--clip-vocab", default="/work/shared/clip/bpe_simple_vocab_16e6.txt.gz")
    s.add_argument("--cases", default="/work/shared/vectors/tokenizer_cases.json")
    s.set_defaults(fn=cmd_selftest)
    e = sub.add_parser("encode")
    e.add_argument("text")
    e.add_argument("--vocab", default=DEFAULT_VOCAB)
    e.set_defaults(fn=lambda a: (lambda t: print(t.ids77(a.text)[:len(t.encode(a.text)) + 2],
                                                 [t.decoder[i] for i in t.encode(a.text)]))(ClipTokenizer(a.vocab)))
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
