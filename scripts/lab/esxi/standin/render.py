#!/usr/bin/env python3
"""Render layouts with the stand-in's formatter from JSON on stdin (a list of jobs), print a JSON
list of texts. Used by test/integration/esxi-standin.test.ts to re-render the captured fixtures
from their own cells and compare byte for byte: the proof that the stand-in's tables and blocks
are laid out the way the captures are.

Jobs: {"kind": "table", "headers", "rows", "numeric"} | {"kind": "kv", "blocks": [{"title",
"pairs"}], "keepSpace"} | {"kind": "vsish", "pairs"} | {"kind": "getallvms", "vms"}.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from esxi_standin import fmt  # noqa: E402


def render(job):
    k = job["kind"]
    if k == "table":
        return fmt.table(job["headers"], job["rows"], set(job["numeric"]))
    if k == "kv":
        return "\n".join(fmt.kv_block(b["title"], b["pairs"], job["keepSpace"]) for b in job["blocks"])
    if k == "vsish":
        return fmt.vsish_python([tuple(p) for p in job["pairs"]])
    if k == "getallvms":
        return fmt.getallvms(job["vms"])
    raise ValueError(f"unknown job kind {k!r}")


if __name__ == "__main__":
    print(json.dumps([render(j) for j in json.load(sys.stdin)]))
