#!/usr/bin/env python3
"""The classic Python approaches trawl replaces, written by us for comparison.

  baseline.py serial  LIST OUT    one file at a time (urllib)
  baseline.py threads LIST OUT    a pool of 8 threads
  baseline.py procs   LIST OUT    a pool of 8 processes
Prints one line: mode, files, bytes, seconds.
"""
import concurrent.futures as cf
import os
import sys
import time
import urllib.request


def fetch(url_out):
    url, out = url_out
    name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "file"
    with urllib.request.urlopen(url, timeout=60) as r, open(os.path.join(out, name), "wb") as f:
        data = r.read()
        f.write(data)
    return len(data)


def main():
    mode, listfile, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    urls = [l.strip() for l in open(listfile) if l.strip() and not l.startswith("#")]
    t0 = time.monotonic()
    jobs = [(u, out) for u in urls]
    if mode == "serial":
        total = sum(fetch(j) for j in jobs)
    elif mode == "threads":
        with cf.ThreadPoolExecutor(8) as ex:
            total = sum(ex.map(fetch, jobs))
    elif mode == "procs":
        with cf.ProcessPoolExecutor(8) as ex:
            total = sum(ex.map(fetch, jobs))
    else:
        sys.exit("mode must be serial, threads or procs")
    print(f"{mode} files={len(urls)} bytes={total} seconds={time.monotonic() - t0:.2f}")


if __name__ == "__main__":
    main()
