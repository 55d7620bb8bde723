#!/usr/bin/env bash
# Downloads a data set from its official source into data/ and checks its md5.
#   data/download.sh cifar10 | cifar100 | tiny_imagenet [DEST]      (DEST defaults to data/)
# ImageNet-1k cannot be downloaded automatically (its license requires an account): get
# ILSVRC2012 from image-net.org and arrange it as data/imagenet/{train,val}/<wnid>/*.JPEG.
set -euo pipefail
what=${1:-}
dest=${2:-$(dirname "$0")}
case "$what" in
  cifar10) url=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz; md5=c32a1d4ab5d03f1284b67883e8d87530 ;;
  cifar100) url=https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz; md5=03b5dce01913d631647c71ecec9e9cb8 ;;
  tiny_imagenet) url=http://cs231n.stanford.edu/tiny-imagenet-200.zip; md5=90528d7ca1a48142e341f4ef8d21d0de ;;
  *) echo "usage: $0 cifar10|cifar100|tiny_imagenet [DEST]" >&2; exit 2 ;;
esac
mkdir -p "$dest"
file="$dest/$(basename "$url")"
if [ ! -f "$file" ]; then
  curl -fL --retry 3 -o "$file.part" "$url"
  mv "$file.part" "$file"
fi
echo "$md5  $file" | md5sum -c - || { echo "md5 mismatch for $file; delete it and retry" >&2; exit 1; }
case "$file" in
  *.tar.gz) tar -xzf "$file" -C "$dest" ;;
  *.zip) (cd "$dest" && unzip -q -o "$(basename "$file")") ;;
esac
echo "done: $what in $dest"
