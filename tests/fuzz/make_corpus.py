#!/usr/bin/env python3
"""Builds the fuzzers' seed corpora from real files (standard library only).

usage: make_corpus.py OUT [--data ../shared/data] [--fashion /usr/share/datasets/fashion-mnist]

OUT/<target>/ receives: safetensors - the small golden fixtures (written by PyTorch's safetensors);
config - every YAML file under configs/, some with `--set` strings after a NUL; stl10 - STL-10
label and image bytes; mat - MATLAB v5 files as SVHN and Flowers-102 ship them; cifar - records in
the official binary format built from real CIFAR-10 images' bytes (the binary release itself is not
available on these machines, see ../shared/data/README.md); idx - Fashion-MNIST's label files and
the first images of its test set re-packed (gzip and plain); tiny_imagenet - the real wnids.txt and
the head of the real val_annotations.txt; image - real JPEGs of all three image sets and small PNGs.
"""
import argparse
import gzip
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = ap.parse_args()
    counts = {}

    def put(target, name, data):
        d = args.out / target
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
        counts[target] = counts.get(target, 0) + 1

    def need(path):
        if not path.exists():
            raise SystemExit(f"make_corpus.py: {path}: not found (seed corpora come from real files)")
        return path

    for f in sorted((ROOT / "tests" / "golden").glob("*.safetensors")):
        if f.stat().st_size <= 64 * 1024:
            put("safetensors", f.name, f.read_bytes())

    sets = [b"train.epochs=2\nmodel.depths=[1,1,3,1]", b"model.name=convnext_femto\ninit.type=xavier",
            b"data.augment.mixup=0.8\ntrain.optimizer.betas=[0.9,0.95]"]
    for i, f in enumerate(sorted((ROOT / "configs").rglob("*.yaml"))):
        text = f.read_bytes()
        put("config", f.name, text)
        put("config", f"{f.stem}+set", text + b"\0" + sets[i % len(sets)])

    data = need(args.data)
    jpgs = sorted(need(data / "cifar10-jpg" / "test").rglob("*.jpg"))[:40:10]
    tiny = sorted(need(data / "tiny-imagenet-200-subset" / "val" / "images").glob("*.JPEG"))[:4]
    large = sorted(need(data / "imagenet-sample").rglob("*.JPEG"), key=lambda p: p.stat().st_size)[:1]
    for f in jpgs + tiny + large:
        put("image", f.name, f.read_bytes())
    put("image", "gray.png", png(8, 6, 0))
    put("image", "rgb.png", png(5, 7, 2))

    # CIFAR records: label byte(s) then 3,072 pixel bytes (channel-major); pixels from real JPEG bytes.
    filler = b"".join(f.read_bytes() for f in jpgs)
    for n in (1, 3):
        rec10 = b"".join(bytes([k % 10]) + (filler * 4)[k * 3072:(k + 1) * 3072] for k in range(n))
        rec100 = b"".join(bytes([k % 20, (7 * k) % 100]) + (filler * 4)[k * 3072:(k + 1) * 3072]
                          for k in range(n))
        put("cifar", f"cifar10_{n}_records", rec10)
        put("cifar", f"cifar100_{n}_records", rec100)

    fashion = need(args.fashion)
    for f in sorted(fashion.glob("*labels*.gz")):
        put("idx", f.name, f.read_bytes())
    images = gzip.decompress(need(fashion / "t10k-images-idx3-ubyte.gz").read_bytes())
    head = struct.pack(">IIII", 0x0803, 3, 28, 28) + images[16:16 + 3 * 28 * 28]
    put("idx", "t10k-images-3", head)
    put("idx", "t10k-images-3.gz", gzip.compress(head))

    wnids = need(data / "tiny-imagenet-200-subset" / "wnids.txt").read_bytes()
    ann = (data / "tiny-imagenet-200-subset" / "val" / "val_annotations.txt").read_bytes()
    put("tiny_imagenet", "real_head", wnids + b"\0" + b"".join(ann.splitlines(True)[:20]))
    put("tiny_imagenet", "real_few", b"\n".join(wnids.splitlines()[:3]) + b"\0"
        + b"".join(l for l in ann.splitlines(True) if l.split(b"\t")[1] in wnids.splitlines()[:3]))

    # STL-10: a count byte, the labels, then images of 3 x 96 x 96 bytes (pixels from JPEG bytes).
    for n in (1, 2):
        labels = bytes(1 + (3 * k) % 10 for k in range(n))
        put("stl10", f"stl10_{n}_images", bytes([n]) + labels + (filler * 40)[:n * 27648])
    # MAT v5 files as SVHN and Flowers-102 publish them (X uint8 32x32x3xN and y double; labels,
    # trnid/valid/tstid double rows).
    put("mat", "svhn_2", mat5([("X", 32, 32, 3, 2, (filler * 4)[:6144]), ("y", 2, 1, [3.0, 10.0])]))
    put("mat", "flowers_labels", mat5([("labels", 1, 4, [1.0, 5.0, 102.0, 7.0])]))
    put("mat", "flowers_setid", mat5([("trnid", 1, 2, [1.0, 2.0]), ("valid", 1, 1, [3.0]),
                                      ("tstid", 1, 1, [4.0])]))

    print("seed corpora in", args.out, ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


def mat5(variables):
    """A MATLAB v5 .mat file (uncompressed): ("name", *dims, uint8 bytes) or ("name", *dims,
    [doubles]) per variable, the layout MATLAB and scipy.io.savemat write."""
    def element(kind, payload):
        pad = (-len(payload)) % 8
        return struct.pack("<II", kind, len(payload)) + payload + b"\0" * pad
    out = b"MATLAB 5.0 MAT-file, written by scion's make_corpus.py".ljust(116, b" ")
    out += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    for name, *rest in variables:
        dims, values = rest[:-1], rest[-1]
        uint8 = isinstance(values, bytes)
        flags = element(6, struct.pack("<II", 9 if uint8 else 6, 0))  # mxUINT8_CLASS / mxDOUBLE
        body = flags + element(5, struct.pack(f"<{len(dims)}i", *dims)) + element(1, name.encode())
        body += element(2, values) if uint8 else element(9, struct.pack(f"<{len(values)}d", *values))
        out += element(14, body)
    return out


def png(width, height, color_type):
    channels = {0: 1, 2: 3}[color_type]
    raw = b"".join(b"\0" + bytes((x * 37 + y * 11 + c * 5) % 256 for x in range(width)
                                 for c in range(channels)) for y in range(height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
