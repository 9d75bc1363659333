"""The function listing of callgrind_annotate, for bench/callgrind.sh: each function with
its instruction count, the source file and binary cut off and a Rust symbol hash dropped."""

import re

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.+?)\s*$")


def functions(path):
    """(function, instructions) for each line of the listing in the file at `path`."""
    started = False
    for l in open(path, errors="replace"):
        if "file:function" in l:
            started = True
            continue
        m = LINE.match(l) if started else None
        if m and ":" in m.group(2):
            fn = m.group(2).split(":", 1)[1].strip()
            fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
            fn = re.sub(r"\s*\[[^\]]*\]$", "", fn)
            yield fn, int(m.group(1).replace(",", ""))
