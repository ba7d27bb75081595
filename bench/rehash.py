"""Rewrite a checkpoint of format 1 (its SHA-256 over the tensors only) as format 2 (one SHA-256 over the tensors
and the whole metadata document), changing nothing else: the same tensors, byte for byte, and the same document
but for ``version`` and the old tensor-only hash. Checks both before it replaces the file.

    python bench/rehash.py src/nameorigin/assets/default.safetensors
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nameorigin import checkpoint


def raw(path: str) -> tuple[dict, dict]:
    with safe_open(path, framework="pt") as f:
        doc = json.loads(f.metadata()[checkpoint.DOC_KEY])
    return doc, load_file(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    path = parser.parse_args().path
    checkpoint.load(path)  # the old hash holds: the file is as it was saved
    doc, tensors = raw(path)
    checkpoint.write(path, tensors, doc)
    new_doc, new_tensors = raw(path)
    assert {k: v for k, v in new_doc.items() if k not in ("version", "weights_sha256")} == {
        k: v for k, v in doc.items() if k not in ("version", "weights_sha256")
    }
    assert new_tensors.keys() == tensors.keys() and all(torch.equal(new_tensors[k], tensors[k]) for k in tensors)
    checkpoint.load(path)  # and the new one holds
    print(f"{path}: format {doc['version']} -> {new_doc['version']}, tensors and metadata unchanged")


if __name__ == "__main__":
    main()
