#!/usr/bin/env python3
"""Writes small fixtures of each expert dataset's native layout, for the importer tests
(crates/unireal-import/tests/import.rs), from the bundled sample images.

    .venv/bin/python scripts/reference/import_fixtures.py   # needs pyarrow (scripts/setup.sh)

Output: crates/unireal-import/tests/fixtures/import/<format>/… Each layout follows the public
release of the set (column names, folder names, pickle structure); a few rows are broken on
purpose (undecodable image, missing file, broken polygon, missing caption) and the tests
expect them recorded and skipped. Also writes expected.json with the counts and areas the
tests check. Standard library + pyarrow only (images are re-encoded by `ffmpeg`).
"""
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "datasets", "samples", "images")
OUT = os.path.join(ROOT, "crates", "unireal-import", "tests", "fixtures", "import")


def small(name, size, fmt):
    """A sample image scaled to `size` (w:h string for ffmpeg), as JPEG or PNG bytes."""
    src = os.path.join(SAMPLES, name)
    codec = {"jpg": ["-c:v", "mjpeg", "-q:v", "4", "-f", "image2pipe"], "png": ["-c:v", "png", "-f", "image2pipe"]}[fmt]
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", src, "-vf", f"scale={size},format=rgb24" if fmt == "png" else f"scale={size}",
         "-frames:v", "1"] + codec + ["-"],
        check=True, capture_output=True).stdout
    return out


def gray_png(w, h, pixel):
    rows = b"".join(b"\x00" + bytes(pixel(x, y) for x in range(w)) for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def hf_image(data, path):
    return {"bytes": data, "path": path}


IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write_parquet(path, columns, rows, row_group_size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    schema = pa.schema(columns)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)


def instructpix2pix(expected):
    d = os.path.join(OUT, "instructpix2pix", "data")
    a, b, c = small("horse.png", "96:-2", "png"), small("chelsea.png", "96:-2", "png"), small("coffee.png", "96:-2", "png")
    cols = [("original_prompt", pa.string()), ("original_image", IMAGE), ("edit_prompt", pa.string()),
            ("edited_prompt", pa.string()), ("edited_image", IMAGE)]
    rows0 = [
        {"original_prompt": "a horse", "original_image": hf_image(a, "0.png"), "edit_prompt": "make it a zebra",
         "edited_prompt": "a zebra", "edited_image": hf_image(b, "0e.png")},
        {"original_prompt": "a cat", "original_image": hf_image(b, "1.png"), "edit_prompt": "turn the cat into a dog",
         "edited_prompt": "a dog", "edited_image": hf_image(c, "1e.png")},
        {"original_prompt": "coffee", "original_image": hf_image(c, "2.png"), "edit_prompt": "add milk",
         "edited_prompt": "coffee with milk", "edited_image": hf_image(b"not an image", "2e.png")},
    ]
    rows1 = [
        {"original_prompt": "a horse", "original_image": hf_image(a, "3.png"), "edit_prompt": "make it night",
         "edited_prompt": "a horse at night", "edited_image": hf_image(c, "3e.png")},
    ]
    write_parquet(os.path.join(d, "train-00000-of-00002.parquet"), cols, rows0, 2)
    write_parquet(os.path.join(d, "train-00001-of-00002.parquet"), cols, rows1, 2)
    expected["instructpix2pix"] = {"files": 2, "units": 3, "rows": 4, "imported": 3, "bad": 1}


def ultraedit(expected):
    d = os.path.join(OUT, "ultraedit")
    a, b = small("rocket.jpg", "96:-2", "jpg"), small("astronaut.png", "96:-2", "png")
    base = [("clip_sim_source", pa.float64()), ("clip_sim_target", pa.float64()), ("source_caption", pa.string()),
            ("target_caption", pa.string()), ("idx", pa.int64()), ("edit_prompt", pa.string()),
            ("source_image", IMAGE), ("edited_image", IMAGE)]
    free = [
        {"clip_sim_source": 0.3, "clip_sim_target": 0.31, "source_caption": "a rocket on a pad", "target_caption": "a rocket in snow",
         "idx": 0, "edit_prompt": "cover the ground in snow", "source_image": hf_image(a, None), "edited_image": hf_image(b, None)},
        {"clip_sim_source": 0.3, "clip_sim_target": 0.29, "source_caption": "an astronaut", "target_caption": "an astronaut in a red suit",
         "idx": 1, "edit_prompt": "make the suit red", "source_image": hf_image(b, None), "edited_image": hf_image(a, None)},
    ]
    write_parquet(os.path.join(d, "FreeForm", "train-00000.parquet"), base, free, 10)
    mask = gray_png(96, 96, lambda x, y: 255 if 20 <= x < 60 and 30 <= y < 70 else 0)
    region_cols = base + [("edit_object", pa.string()), ("mask_image", IMAGE)]
    region = [
        {"clip_sim_source": 0.3, "clip_sim_target": 0.3, "source_caption": "a rocket", "target_caption": "a blue rocket",
         "idx": 2, "edit_prompt": "paint the rocket blue", "source_image": hf_image(a, None), "edited_image": hf_image(b, None),
         "edit_object": "rocket", "mask_image": hf_image(mask, None)},
    ]
    write_parquet(os.path.join(d, "RegionBase", "train-00000.parquet"), region_cols, region, 10)
    expected["ultraedit"] = {"files": 2, "units": 2, "rows": 3, "imported": 3, "bad": 0}


def magicbrush(expected):
    d = os.path.join(OUT, "magicbrush", "data")
    a, b, c = small("coffee.png", "96:-2", "png"), small("horse.png", "96:-2", "png"), small("chelsea.png", "96:-2", "png")
    mask = gray_png(96, 72, lambda x, y: 255 if x > 40 else 0)
    cols = [("img_id", pa.string()), ("turn_index", pa.int32()), ("source_img", IMAGE), ("mask_img", IMAGE),
            ("instruction", pa.string()), ("target_img", IMAGE)]
    rows = [
        {"img_id": "242679", "turn_index": 1, "source_img": hf_image(a, None), "mask_img": hf_image(mask, None),
         "instruction": "Put a spoon in the cup", "target_img": hf_image(b, None)},
        {"img_id": "242679", "turn_index": 2, "source_img": hf_image(b, None), "mask_img": hf_image(mask, None),
         "instruction": "Make the table wooden", "target_img": hf_image(c, None)},
    ]
    write_parquet(os.path.join(d, "train-00000-of-00001.parquet"), cols, rows, 10)
    expected["magicbrush"] = {"files": 1, "units": 1, "rows": 2, "imported": 2, "bad": 0}


def emu_edit(expected):
    d = os.path.join(OUT, "emu-edit", "data")
    a, b = small("astronaut.png", "96:-2", "png"), small("rocket.jpg", "96:-2", "jpg")
    cols = [("instruction", pa.string()), ("image", IMAGE), ("task", pa.string()), ("split", pa.string()),
            ("idx", pa.int64()), ("hash", pa.string()), ("input_caption", pa.string()), ("output_caption", pa.string())]
    rows = [
        {"instruction": "Remove the flag", "image": hf_image(a, None), "task": "remove", "split": "test", "idx": 0,
         "hash": "a1", "input_caption": "an astronaut with a flag", "output_caption": "an astronaut"},
        {"instruction": "Make it a watercolor painting", "image": hf_image(b, None), "task": "style", "split": "validation",
         "idx": 1, "hash": "b2", "input_caption": "a rocket", "output_caption": "a watercolor rocket"},
    ]
    write_parquet(os.path.join(d, "test-00000-of-00001.parquet"), cols, rows, 10)
    expected["emu-edit"] = {"files": 1, "units": 1, "rows": 2, "imported": 2, "bad": 0}


def vitonhd(expected):
    d = os.path.join(OUT, "vitonhd")
    shutil.rmtree(d, ignore_errors=True)
    person, cloth = small("astronaut.png", "72:96", "jpg"), small("coffee.png", "72:96", "jpg")
    mask = small("coffee.png", "72:96,format=gray", "jpg")
    agn = small("astronaut.png", "72:96,drawbox=x=16:y=30:w=40:h=40:color=gray:t=fill", "jpg")
    for split, names in [("train", ["00000_00", "00001_00"]), ("test", ["05006_00", "05007_00"])]:
        for sub in ["image", "cloth", "cloth-mask", "agnostic-v3.2"]:
            os.makedirs(os.path.join(d, split, sub), exist_ok=True)
        for n in names:
            open(os.path.join(d, split, "image", n + ".jpg"), "wb").write(person)
            open(os.path.join(d, split, "agnostic-v3.2", n + ".jpg"), "wb").write(agn)
            open(os.path.join(d, split, "cloth-mask", n + ".jpg"), "wb").write(mask)
            if n != "00001_00":  # a missing garment: a bad row
                open(os.path.join(d, split, "cloth", n + ".jpg"), "wb").write(cloth)
    open(os.path.join(d, "train_pairs.txt"), "w").write("00000_00.jpg 00000_00.jpg\n00001_00.jpg 00001_00.jpg\n")
    # The official test pairs are unpaired (another person's garment): no ground truth.
    open(os.path.join(d, "test_pairs.txt"), "w").write("05006_00.jpg 05007_00.jpg\n05007_00.jpg 05007_00.jpg\n")
    expected["vitonhd"] = {"files": 2, "units": 2, "rows": 4, "imported": 3, "bad": 1}


def rle_string(counts):
    """pycocotools' compressed RLE (rleToString)."""
    out = []
    for i, c in enumerate(counts):
        x = c
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def rle_counts(mask, w, h):
    """Column-major run lengths starting with zeros."""
    flat = [mask(x, y) for x in range(w) for y in range(h)]
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def shoelace(poly):
    xs, ys = poly[0::2], poly[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def refcoco(expected):
    d = os.path.join(OUT, "refcoco")
    imgs = os.path.join(OUT, "coco", "train2014")
    os.makedirs(d, exist_ok=True)
    os.makedirs(imgs, exist_ok=True)
    files = {1: ("COCO_train2014_000000000001.jpg", "chelsea.png"), 2: ("COCO_train2014_000000000002.jpg", "horse.png"),
             3: ("COCO_train2014_000000000003.jpg", "rocket.jpg")}
    images = []
    for iid, (fn, src) in files.items():
        data = small(src, "120:90", "jpg")
        if iid != 3:  # image 3 is missing from the folder: a bad row
            open(os.path.join(imgs, fn), "wb").write(data)
        images.append({"file_name": fn, "height": 90, "width": 120, "id": iid})
    tri = [10.0, 10.0, 80.0, 20.0, 40.0, 70.0]
    quad = [60.5, 30.0, 110.0, 30.0, 110.0, 80.5, 60.5, 80.5]
    rle_mask = lambda x, y: 1 if 30 <= x < 70 and 20 <= y < 60 else 0
    counts = rle_counts(rle_mask, 120, 90)
    anns = [
        {"id": 101, "image_id": 1, "category_id": 17, "iscrowd": 0, "area": shoelace(tri), "bbox": [10, 10, 70, 60],
         "segmentation": [tri]},
        {"id": 102, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": shoelace(quad), "bbox": [60.5, 30, 49.5, 50.5],
         "segmentation": [quad]},
        {"id": 103, "image_id": 2, "category_id": 19, "iscrowd": 1, "area": 1600.0, "bbox": [30, 20, 40, 40],
         "segmentation": {"size": [90, 120], "counts": rle_string(counts)}},
        {"id": 104, "image_id": 2, "category_id": 19, "iscrowd": 1, "area": 1600.0, "bbox": [30, 20, 40, 40],
         "segmentation": {"size": [90, 120], "counts": counts}},
        {"id": 105, "image_id": 2, "category_id": 19, "iscrowd": 0, "area": 0.0, "bbox": [0, 0, 1, 1],
         "segmentation": [[5.0, 5.0, 9.0]]},  # broken polygon: a bad row
        {"id": 106, "image_id": 3, "category_id": 5, "iscrowd": 0, "area": shoelace(tri), "bbox": [10, 10, 70, 60],
         "segmentation": [tri]},
    ]
    json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"},
                                                                      {"id": 19, "name": "horse"}, {"id": 5, "name": "airplane"}]},
              open(os.path.join(d, "instances.json"), "w"))

    def sent(sid, text):
        return {"tokens": text.split(), "raw": text, "sent_id": sid, "sent": text}

    refs = [
        {"sent_ids": [1, 2], "file_name": "COCO_train2014_000000000001_101.jpg", "ann_id": 101, "ref_id": 0, "image_id": 1,
         "split": "train", "sentences": [sent(1, "cat on the left"), sent(2, "the sleepy cat")], "category_id": 17},
        {"sent_ids": [3], "file_name": "COCO_train2014_000000000001_102.jpg", "ann_id": 102, "ref_id": 1, "image_id": 1,
         "split": "val", "sentences": [sent(3, "right part")], "category_id": 1},
        {"sent_ids": [4], "file_name": "COCO_train2014_000000000002_103.jpg", "ann_id": 103, "ref_id": 2, "image_id": 2,
         "split": "testA", "sentences": [sent(4, "horse in the middle")], "category_id": 19},
        {"sent_ids": [5], "file_name": "COCO_train2014_000000000002_104.jpg", "ann_id": 104, "ref_id": 3, "image_id": 2,
         "split": "testB", "sentences": [sent(5, "the same horse")], "category_id": 19},
        {"sent_ids": [6], "file_name": "COCO_train2014_000000000002_105.jpg", "ann_id": 105, "ref_id": 4, "image_id": 2,
         "split": "train", "sentences": [sent(6, "a broken outline")], "category_id": 19},
        {"sent_ids": [7], "file_name": "COCO_train2014_000000000003_106.jpg", "ann_id": 106, "ref_id": 5, "image_id": 3,
         "split": "train", "sentences": [sent(7, "a missing image")], "category_id": 5},
    ]
    # REFER's files are Python 2 pickles; protocol 2 is what it reads.
    pickle.dump(refs, open(os.path.join(d, "refs(unc).p"), "wb"), protocol=2)
    expected["refcoco"] = {
        "rows": 7, "imported": 5, "bad": 2,
        "areas": {"101": shoelace(tri), "102": shoelace(quad), "103": 1600.0, "104": 1600.0},
    }


def dreambench(expected):
    d = os.path.join(OUT, "dreambench", "dataset")
    shutil.rmtree(os.path.dirname(d), ignore_errors=True)
    for subject, srcs in [("backpack", ["rocket.jpg", "coffee.png"]), ("dog", ["chelsea.png", "horse.png"])]:
        os.makedirs(os.path.join(d, subject))
        for i, s in enumerate(srcs):
            open(os.path.join(d, subject, f"{i:02d}.jpg"), "wb").write(small(s, "64:-2", "jpg"))
    text = """Classes
subject_name,class
backpack,backpack
dog,dog

Prompts
Object Prompts
prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a {0} {1} on top of a wooden floor'.format(unique_token, class_token),
'a red {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts
prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a {0} {1} wearing a santa hat'.format(unique_token, class_token)
]
"""
    open(os.path.join(d, "prompts_and_classes.txt"), "w").write(text)
    expected["dreambench"] = {"rows": 5, "imported": 5, "bad": 0}


def omnigen(expected):
    d = os.path.join(OUT, "omnigen")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    for n, s in [("a.jpg", "horse.png"), ("b.jpg", "chelsea.png"), ("c.jpg", "rocket.jpg")]:
        open(os.path.join(d, "images", n), "wb").write(small(s, "80:-2", "jpg"))
    rows = [
        {"task_type": "image_edit", "instruction": "<img><|image_1|></img> Make the horse brown.",
         "input_images": ["images/a.jpg"], "output_image": "images/b.jpg"},
        {"task_type": "subject_driven", "instruction": "The cat in <img><|image_1|></img> sits next to the rocket in <img><|image_2|></img>.",
         "input_images": ["images/b.jpg", "images/c.jpg"], "output_image": "images/a.jpg"},
        {"task_type": "text_to_image", "instruction": "A rocket on a launch pad at dawn.", "input_images": [],
         "output_image": "images/c.jpg"},
        {"task_type": "image_edit", "instruction": "<img><|image_1|></img> Remove the cat.",
         "input_images": ["images/missing.jpg"], "output_image": "images/a.jpg"},
    ]
    with open(os.path.join(d, "train.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")
    expected["omnigen"] = {"rows": 5, "imported": 3, "bad": 2}


def images(expected):
    d = os.path.join(OUT, "images")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for n, s, cap in [("horse.jpg", "horse.png", "A horse drawn in black and white."),
                      ("cat.png", "chelsea.png", "A tabby cat looking to the side."),
                      ("rocket.jpg", "rocket.jpg", None)]:
        open(os.path.join(d, n), "wb").write(small(s, "80:-2", "png" if n.endswith(".png") else "jpg"))
        if cap:
            open(os.path.join(d, os.path.splitext(n)[0] + ".txt"), "w").write(cap + "\n")
    open(os.path.join(d, "broken.jpg"), "wb").write(b"\xff\xd8 not really a jpeg")
    open(os.path.join(d, "broken.txt"), "w").write("A broken file.\n")
    expected["images"] = {"rows": 4, "imported": 2, "bad": 2}


def main():
    expected = {}
    for f in [instructpix2pix, ultraedit, magicbrush, emu_edit, vitonhd, refcoco, dreambench, omnigen, images]:
        f(expected)
    json.dump(expected, open(os.path.join(OUT, "expected.json"), "w"), indent=1, sort_keys=True)
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
