#!/usr/bin/env python3
"""Writes the hand-made regression inputs of tests/fuzz/regressions/ (standard library only).

These are the bad files the issues reported (each was mishandled once); crashers the fuzzers find
are saved beside them under their own names (crash-<sha1>, as libFuzzer names them). Every file here
goes through its fuzz target in `make test` (tests/fuzz/test_regressions.cpp).
"""
import json
import struct
import sys
import zlib
from pathlib import Path

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "regressions")


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(header_text, payload=b""):
    h = header_text.encode()
    return struct.pack("<Q", len(h)) + h + payload


# safetensors: byte counts that overflow to 0, a duplicate key, a NUL-padded header, a header
# length past the end of the file.
put("safetensors", "numel_2pow63_bf16",
    safetensors('{"x":{"dtype":"BF16","shape":[9223372036854775808],"data_offsets":[0,0]}}'))
put("safetensors", "numel_2pow62_f32",
    safetensors('{"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}'))
put("safetensors", "duplicate_key",
    safetensors('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                '"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab"))
put("safetensors", "nul_padded_header",
    safetensors('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}\0\0\0', b"a"))
put("safetensors", "header_past_end", struct.pack("<Q", 1 << 40) + b"{}")
put("safetensors", "valid_small",
    safetensors(json.dumps({"__metadata__": {"format": "pt"},
                            "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
                struct.pack("<2f", 1.0, -2.0)))

# config: a duplicate key, an empty --set value, NaN in range-checked values, a huge depth.
put("config", "duplicate_key", "train:\n  epochs: 3\n  epochs: 4\n")
put("config", "empty_set_value", "model:\n  name: vit_tiny\n\0model.name=")
put("config", "nan_lr", "train:\n  optimizer:\n    lr: .nan\n")
put("config", "nan_std", "data:\n  std: [.nan, 0.2, 0.2]\n")
put("config", "huge_convnext_depth", "model:\n  name: convnext_femto\n\0model.depths=[1000000,1,1,1]")
put("config", "tiny_convnext_img_size", "model:\n  name: convnext_femto\n  img_size: 8\n")

# CIFAR: a label past the class count, a file that is not whole records.
put("cifar", "label_out_of_range", bytes([10]) + bytes(3072))
put("cifar", "partial_record", bytes(3000))

# IDX: a header announcing 4 x (2^32 - 1) bytes in a 20-byte file; a truncated body.
put("idx", "huge_dims", struct.pack(">I", 0x0804) + struct.pack(">4I", *[0xFFFFFFFF] * 4))
put("idx", "truncated", struct.pack(">I", 0x0803) + struct.pack(">3I", 10, 28, 28) + bytes(100))

# Tiny ImageNet: a class listed twice, annotations naming files outside val/images.
put("tiny_imagenet", "duplicate_wnid", "n01\nn01\n\0val_0.JPEG\tn01\t0\t0\t1\t1\n")
put("tiny_imagenet", "path_escape", "n01\n\0../../../etc/passwd\tn01\t0\t0\t1\t1\n")


# Images: headers claiming 65500 x 65500 pixels (decompression bombs), decided from the header.
def png(width, height, raw):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


put("image", "png_65500_square", png(65500, 65500, bytes(65501)))
put("image", "png_2x2_gray", png(2, 2, b"\0\x10\x20\0\x30\x40"))
put("image", "jpeg_sof_65500_square",
    b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65500, 65500, 1) + b"\x01\x11\x00"
    + b"\xff\xd9")

# STL-10 (count byte, labels, pixels): a label 0, pixels cut short, one valid image.
put("stl10", "label_zero", bytes([1, 0]) + bytes(27648))
put("stl10", "truncated_pixels", bytes([2, 1, 2]) + bytes(1000))
put("stl10", "valid_one", bytes([1, 5]) + bytes(range(256)) * 108)

# MAT v5 (libmatio; read as SVHN and as Flowers-102): a cut header, X of the wrong shape, a label
# 11, dimensions far larger than the data, one valid SVHN image.
sys.path.insert(0, str(Path(__file__).parent))
from make_corpus import mat5  # noqa: E402

valid = mat5([("X", 32, 32, 3, 1, bytes(3072)), ("y", 1, 1, [4.0])])
put("mat", "truncated_header", valid[:100])
put("mat", "x_16x16", mat5([("X", 16, 16, 3, 1, bytes(768)), ("y", 1, 1, [4.0])]))
put("mat", "label_eleven", mat5([("X", 32, 32, 3, 1, bytes(3072)), ("y", 1, 1, [11.0])]))
put("mat", "dims_past_data", mat5([("X", 32, 32, 3, 100000, bytes(3072)), ("y", 1, 1, [4.0])]))
put("mat", "valid_svhn_1", valid)
