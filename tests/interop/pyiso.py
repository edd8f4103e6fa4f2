#!/usr/bin/env python3
"""Bridge to pyiso8583 (an independent ISO 8583 implementation) for tests/codec_interop.rs.

Usage: pyiso.py encode|decode  with a JSON request on stdin, JSON answer on stdout.
  encode: {"bitmap": "binary"|"hex", "docs": [{"t": "0100", "2": "...", ...}]}
          -> {"hex": ["<message bytes as hex>", ...]}
  decode: {"bitmap": "binary"|"hex", "hex": ["...", ...]}
          -> {"docs": [{"t": "0100", "1": "...", "2": "...", ...}]}
Binary (b) fields are hex strings, as pyiso8583 represents them.
"""
import copy
import json
import sys

import iso8583
from iso8583.specs import default_ascii


def spec_for(bitmap):
    """pyiso8583's ASCII spec, aligned with authswitch's proto/iso8583-1987.csv where the
    two differ: raw binary DE52/55/64/96/128 and the maximum lengths of DE54/55."""
    spec = copy.deepcopy(default_ascii)
    if bitmap == "binary":
        spec["p"].update(data_enc="b", max_len=8)
        spec["1"].update(data_enc="b", max_len=8)
    for field in ("52", "64", "96", "128"):
        spec[field].update(data_enc="b", max_len=8)
    spec["55"].update(data_enc="b", max_len=255)
    spec["54"].update(max_len=120)
    return spec


def main():
    command = sys.argv[1]
    request = json.load(sys.stdin)
    spec = spec_for(request["bitmap"])
    if command == "encode":
        out = []
        for doc in request["docs"]:
            raw, _ = iso8583.encode(dict(doc), spec)
            out.append(bytes(raw).hex())
        json.dump({"hex": out}, sys.stdout)
    elif command == "decode":
        docs = []
        for h in request["hex"]:
            doc, _ = iso8583.decode(bytearray.fromhex(h), spec)
            docs.append(doc)
        json.dump({"docs": docs}, sys.stdout)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
