#!/usr/bin/env python3
"""Benchmark corpora on disk, and verification of a download against them.

  corpus.py uniform DIR COUNT MIN MAX SEED   COUNT files of MIN..MAX bytes (uniform), pseudo-random
                                             content; deterministic for a given seed
  corpus.py classic DIR FIXTURE              the classic Imgur-shaped gallery, downloaded once from
                                             trawl-fixture (every file, the gallery page, manifest)
  corpus.py tiny DIR COUNT                   COUNT links to /t/NNNNNNN.txt; nginx answers each with
                                             the same 2-byte body, so no files are written
  corpus.py verify DIR OUT                   checks OUT against DIR/expected.tsv: exactly those
                                             names, each with its size and SHA-256

A corpus directory holds:
  files/           what nginx serves as its root (files/i/NAME, files/3/gallery/hot/viral/0.json)
  manifest.tsv     name, size, sha256 of every file the server has
  expected.tsv     name, size, sha256 of every file a client must end up with (its job)
  paths.txt        the URL path of each expected file, for wrk and for the URL lists
  params.json      the parameters it was made with; a corpus is rebuilt only when they change
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.request

TINY_BODY = b"x\n"


def write_lists(d, entries, paths):
    """entries: (name, size, sha256) of the expected files; paths: their URL paths."""
    with open(os.path.join(d, "expected.tsv"), "w") as f:
        f.writelines(f"{n}\t{s}\t{h}\n" for n, s, h in entries)
    with open(os.path.join(d, "paths.txt"), "w") as f:
        f.writelines(p + "\n" for p in paths)


def make_uniform(d, count, lo, hi, seed):
    files = os.path.join(d, "files", "i")
    os.makedirs(files, exist_ok=True)
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    seen, entries, paths = set(), [], []
    while len(entries) < count:
        ident = "".join(rng.choice(alphabet) for _ in range(7))
        # Case-insensitive unique, like trawl's names, so no tool has to rename anything.
        if ident.lower() in seen:
            continue
        seen.add(ident.lower())
        name = ident + ".jpg"
        size = rng.randint(lo, hi)
        body = random.Random(f"{seed}/{name}").randbytes(size)
        with open(os.path.join(files, name), "wb") as f:
            f.write(body)
        entries.append((name, size, hashlib.sha256(body).hexdigest()))
        paths.append("/i/" + name)
    with open(os.path.join(d, "manifest.tsv"), "w") as f:
        f.writelines(f"{n}\t{s}\t{h}\n" for n, s, h in entries)
    write_lists(d, entries, paths)


def make_classic(d, fixture):
    ready = os.path.join(d, "fixture.ready")
    proc = subprocess.Popen([fixture, "--corpus", "classic", "--base-url", "@BASE@",
                             "--ready-file", ready], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("corpus.py: trawl-fixture did not start")
            time.sleep(0.05)
        url = dict(l.split("=", 1) for l in open(ready).read().split()).get("url")
        get = lambda p: urllib.request.urlopen(url + p, timeout=30).read()
        manifest = get("/manifest.tsv").decode()
        gallery = get("/3/gallery/hot/viral/0.json")
        os.makedirs(os.path.join(d, "files", "i"), exist_ok=True)
        sums = {}
        for line in manifest.splitlines():
            name, size, sha = line.split("\t")
            body = get("/i/" + name)
            if len(body) != int(size) or hashlib.sha256(body).hexdigest() != sha:
                sys.exit(f"corpus.py: fixture served a bad {name}")
            with open(os.path.join(d, "files", "i", name), "wb") as f:
                f.write(body)
            sums[name] = (int(size), sha)
    finally:
        proc.terminate()
        proc.wait(10)
    # The served gallery has @BASE@ replaced by the server's URL (bench/run does it per port).
    with open(os.path.join(d, "gallery.template.json"), "wb") as f:
        f.write(gallery)
    with open(os.path.join(d, "manifest.tsv"), "w") as f:
        f.write(manifest)
    # The job: the gallery's single (non-album) items whose link ends in .jpg.
    entries, paths = [], []
    for item in json.loads(gallery)["data"]:
        link = item.get("link", "")
        if item.get("is_album") or not link.lower().endswith(".jpg"):
            continue
        name = link.rsplit("/", 1)[1]
        entries.append((name, *sums[name]))
        paths.append(link.replace("@BASE@", ""))
    write_lists(d, entries, paths)


def make_tiny(d, count):
    sha = hashlib.sha256(TINY_BODY).hexdigest()
    names = [f"{i:07d}.txt" for i in range(count)]
    os.makedirs(os.path.join(d, "files"), exist_ok=True)
    with open(os.path.join(d, "manifest.tsv"), "w") as f:
        f.write(f"*.txt\t{len(TINY_BODY)}\t{sha}\n")
    write_lists(d, [(n, len(TINY_BODY), sha) for n in names], ["/t/" + n for n in names])


def verify(d, out):
    """Returns (ok, message). Lost, extra, short or corrupted files all fail the run."""
    expected = {}
    for line in open(os.path.join(d, "expected.tsv")):
        name, size, sha = line.rstrip("\n").split("\t")
        expected[name] = (int(size), sha)
    try:
        present = {e.name: e for e in os.scandir(out)}
    except FileNotFoundError:
        return False, "no output directory"
    missing = [n for n in expected if n not in present]
    extra = [n for n in present if n not in expected]
    bad = []
    total = 0
    digests = {}  # many tiny files share one body: hash each distinct (size, first bytes) once
    for name, (size, sha) in expected.items():
        e = present.get(name)
        if e is None:
            continue
        if not e.is_file() or e.stat().st_size != size:
            bad.append(name)
            continue
        with open(e.path, "rb") as f:
            if size <= 64:
                body = f.read()
                h = digests.get(body) or digests.setdefault(body, hashlib.sha256(body).hexdigest())
            else:
                h = hashlib.file_digest(f, "sha256").hexdigest()
        if h != sha:
            bad.append(name)
        total += size
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if bad:
            parts.append(f"{len(bad)} wrong size or SHA-256 (e.g. {bad[0]})")
        return False, "; ".join(parts)
    return True, f"{len(expected)} files, {total} bytes"


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "uniform":
        d, count, lo, hi, seed = sys.argv[2], *map(int, sys.argv[3:7])
        make_uniform(d, count, lo, hi, seed)
    elif cmd == "classic":
        make_classic(sys.argv[2], sys.argv[3])
    elif cmd == "tiny":
        make_tiny(sys.argv[2], int(sys.argv[3]))
    elif cmd == "verify":
        ok, msg = verify(sys.argv[2], sys.argv[3])
        print(("OK " if ok else "FAIL ") + msg)
        sys.exit(0 if ok else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
