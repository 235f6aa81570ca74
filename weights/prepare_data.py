#!/usr/bin/python3
"""Build the demo model's training set: 64x64 emoji images with text captions.

Source: the emoji-datasource-twitter and emoji-datasource-google npm packages (iamcal/emoji-data),
which carry one 64x64 RGBA PNG per emoji and skin-tone variant (img/<set>/64/) plus emoji.json
with names, short names, category and subcategory. Twemoji graphics are CC-BY 4.0, Noto emoji
graphics are Apache-2.0 (see weights/README.md for attribution).

Outputs (under weights/data/, git-ignored):
  emoji64.npz     images uint8 [N, 64, 64, 3] (RGBA composited onto white)
  emoji64.json    per image: caption (canonical, used for the BPE vocabulary and the evaluation)
                  and the caption's parts (name, tones, short names, subcategory, category,
                  style) so training can also show shorter captions
  captions.txt    the canonical captions, one per line, same order as the images

Usage: /usr/bin/python3 weights/prepare_data.py [--skin-tones none|single|all]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

# Pinned sources: npm package, version and the registry's sha1 of the tarball.
PACKAGES = {
    "twitter": ("emoji-datasource-twitter", "16.0.0", "e2bd39a8acb77e158106f8249dd7b4cd93fa1b14"),
    "google": ("emoji-datasource-google", "16.0.0", "a80ac3e8106cbd4d8648ce758aa099e8827b6157"),
}
IMAGE_SIZE = 64

# Unicode skin-tone modifiers (Fitzpatrick types) as CLDR names them.
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(style):
    """Download (npm pack) and extract one package; returns its extracted 'package' folder."""
    name, version, want_sha1 = PACKAGES[style]
    tgz = os.path.join(DATA, f"{name}-{version}.tgz")
    if not os.path.exists(tgz):
        print(f"npm pack {name}@{version}", flush=True)
        subprocess.run(["npm", "pack", f"{name}@{version}"], cwd=DATA, check=True,
                       stdout=subprocess.DEVNULL)
    got = sha1(tgz)
    if got != want_sha1:
        sys.exit(f"{tgz}: sha1 {got} != registry's {want_sha1}; delete it and rerun")
    root = os.path.join(DATA, style)
    pkg = os.path.join(root, "package")
    if not os.path.exists(os.path.join(pkg, "emoji.json")):
        print(f"extracting {tgz}", flush=True)
        with tarfile.open(tgz) as t:
            members = [m for m in t.getmembers()
                       if m.isfile() and (m.name.count("/") == 1 or f"/img/{style}/64/" in m.name)]
            t.extractall(root, members=members)
    return pkg


def words(s):
    """'face-smiling' / 'raised_hands' -> 'face smiling' / 'raised hands'."""
    return " ".join(s.replace("_", " ").replace("-", " ").split())


def caption_parts(emoji, tone_key, style):
    name = " ".join(emoji["name"].lower().split())
    tones = []
    if tone_key:
        for t in tone_key.split("-"):
            if SKIN_TONES[t] not in tones:
                tones.append(SKIN_TONES[t])
    shorts = []
    if emoji["category"] != "Flags":  # flag short names are ISO codes ("flag-va"): noise
        for s in emoji["short_names"]:
            w = words(s)
            if w != name and w not in shorts and not w.startswith("skin tone"):
                shorts.append(w)
    return {
        "name": name,
        "tones": tones,
        "short_names": shorts,
        "subcategory": words(emoji["subcategory"]),
        "category": emoji["category"].lower(),
        "style": f"{style} style",
    }


def full_caption(p):
    """The canonical caption: every part, most specific first."""
    return ", ".join([p["name"], *p["tones"], *p["short_names"], p["subcategory"], p["category"], p["style"]])


def load_rgb_on_white(path):
    im = Image.open(path).convert("RGBA")
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, im).convert("RGB"), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skin-tones", choices=["none", "single", "all"], default="single",
                    help="skin-tone variants to include: none, the five single-tone ones, or all "
                         "(incl. two-tone couples); default single")
    args = ap.parse_args()
    os.makedirs(DATA, exist_ok=True)

    images, items = [], []
    for style in PACKAGES:
        pkg = fetch(style)
        with open(os.path.join(pkg, "emoji.json"), encoding="utf-8") as f:
            emojis = json.load(f)
        emojis.sort(key=lambda e: e["sort_order"])
        img_dir = os.path.join(pkg, "img", style, str(IMAGE_SIZE))
        for e in emojis:
            variants = [(None, e)]
            if args.skin_tones != "none":
                for key, v in sorted(e.get("skin_variations", {}).items()):
                    if args.skin_tones == "all" or "-" not in key:
                        variants.append((key, v))
            for tone_key, v in variants:
                if not v.get(f"has_img_{style}", False):
                    continue
                path = os.path.join(img_dir, v["image"])
                if not os.path.exists(path):
                    continue
                parts = caption_parts(e, tone_key, style)
                images.append(load_rgb_on_white(path))
                items.append({"caption": full_caption(parts), "parts": parts, "unified": v["unified"]})
        print(f"{style}: {sum(1 for it in items if it['parts']['style'] == style + ' style')} images", flush=True)

    images = np.stack(images)
    np.savez_compressed(os.path.join(DATA, "emoji64.npz"), images=images)
    meta = {
        "sources": {s: {"npm": n, "version": v, "sha1": h} for s, (n, v, h) in PACKAGES.items()},
        "image_size": IMAGE_SIZE,
        "skin_tones": args.skin_tones,
        "items": items,
    }
    with open(os.path.join(DATA, "emoji64.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=0)
    with open(os.path.join(DATA, "captions.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(it["caption"] for it in items) + "\n")
    print(f"{len(items)} image/caption pairs -> {DATA}/emoji64.npz, emoji64.json, captions.txt")
    for i in range(0, len(items), max(1, len(items) // 8)):
        print("  ", items[i]["caption"])


if __name__ == "__main__":
    main()
