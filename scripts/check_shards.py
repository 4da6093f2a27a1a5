#!/usr/bin/env python3
"""Reads a unireal shard directory with pyarrow alone, as an outside tool would.

Usage: check_shards.py DIR
Checks that every shard in DIR/manifest.json opens with pyarrow.parquet, has the contract's
columns, the listed row count, images as a list of structs whose bytes are JPEG or PNG, and
meta as JSON text. Prints a one-line summary; exits non-zero on the first problem.
"""
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

COLUMNS = ["sample_id", "task", "source", "split", "base_prompt", "context_prompt", "images", "meta"]
IMAGE_FIELDS = ["role", "encoding", "bytes", "width", "height"]


def main(d: Path) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    rows = 0
    for shard in manifest["shards"]:
        table = pq.read_table(d / shard["file"])
        assert table.column_names == COLUMNS, (shard["file"], table.column_names)
        assert table.num_rows == shard["rows"], (shard["file"], table.num_rows, shard["rows"])
        item = table.schema.field("images").type.value_type
        assert [item.field(i).name for i in range(item.num_fields)] == IMAGE_FIELDS, item
        for row in table.to_pylist():
            assert row["images"], row["sample_id"]
            # Inputs first, outputs last; evaluation rows (split `test`) may have no output.
            roles = [i["role"] for i in row["images"]]
            assert roles == sorted(roles, key=lambda r: r == "output"), (row["sample_id"], roles)
            assert roles[-1] == "output" or row["split"] == "test", row["sample_id"]
            for img in row["images"]:
                magic = img["bytes"][:4]
                assert magic[:2] == b"\xff\xd8" or magic == b"\x89PNG", (row["sample_id"], magic)
                assert img["width"] > 0 and img["height"] > 0
            json.loads(row["meta"])
            assert row["base_prompt"].strip(), row["sample_id"]
        rows += table.num_rows
    # The directory reads as one dataset too.
    ds = pq.ParquetDataset([str(d / s["file"]) for s in manifest["shards"]])
    assert ds.read(columns=["sample_id"]).num_rows == rows
    print(f"pyarrow {__import__('pyarrow').__version__}: {len(manifest['shards'])} shard(s), {rows} row(s) OK")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
