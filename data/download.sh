#!/usr/bin/env bash
# Downloads a data set from its official source (the URLs and md5 sums torchvision uses) into DEST
# and checks every file's md5; archives are extracted into the layout scion's reader expects.
#   data/download.sh NAME [DEST]      (DEST defaults to data/NAME, cifar10/cifar100/tiny_imagenet
#                                      to data/ as before)
#   NAME: cifar10 | cifar100 | tiny_imagenet | stl10 | svhn | flowers102 | pets | food101 | dtd |
#         eurosat                      then data.dataset: NAME, data.root: DEST
# ImageNet-1k cannot be downloaded automatically (its license requires an account): get
# ILSVRC2012 from image-net.org and arrange it as data/imagenet/{train,val}/<wnid>/*.JPEG.
set -euo pipefail
what=${1:-}
here=$(dirname "$0")
case "$what" in
  cifar10|cifar100|tiny_imagenet) dest=${2:-$here} ;;
  stl10|svhn|flowers102|pets|food101|dtd|eurosat) dest=${2:-$here/$what} ;;
  *) echo "usage: $0 cifar10|cifar100|tiny_imagenet|stl10|svhn|flowers102|pets|food101|dtd|eurosat [DEST]" >&2
     exit 2 ;;
esac
mkdir -p "$dest"

# fetch URL MD5: downloads into DEST (kept when its md5 is right), checks, extracts archives.
fetch() {
  local url=$1 md5=$2 file
  file="$dest/$(basename "$url")"
  if [ ! -f "$file" ]; then
    curl -fL --retry 3 -o "$file.part" "$url"
    mv "$file.part" "$file"
  fi
  echo "$md5  $file" | md5sum -c - || { echo "md5 mismatch for $file; delete it and retry" >&2; exit 1; }
  case "$file" in
    *.tar.gz|*.tgz) tar -xzf "$file" -C "$dest" ;;
    *.zip) (cd "$dest" && unzip -q -o "$(basename "$file")") ;;
  esac
}

case "$what" in
  cifar10) fetch https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz c32a1d4ab5d03f1284b67883e8d87530 ;;
  cifar100) fetch https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz 03b5dce01913d631647c71ecec9e9cb8 ;;
  tiny_imagenet) fetch http://cs231n.stanford.edu/tiny-imagenet-200.zip 90528d7ca1a48142e341f4ef8d21d0de ;;
  stl10) fetch http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz 91f7769df0f17e558f3565bffb0c7dfb ;;
  svhn)
    fetch http://ufldl.stanford.edu/housenumbers/train_32x32.mat e26dedcc434d2e4c54c9b2d4a06d8373
    fetch http://ufldl.stanford.edu/housenumbers/test_32x32.mat eb5a983be6a315427106f1b164d9cef3 ;;
  flowers102)
    fetch https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz 52808999861908f626f3c1f4e79d11fa
    fetch https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat e0620be6f572b9609742df49c70aed4d
    fetch https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat a5357ecc9cb78c4bef273ce3793fc85c ;;
  pets)
    fetch https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz 5c4f3ee8e5d25df40f4fd59a7f44e54c
    fetch https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz 95a8c909bbe2e81eed6a22bccdf3f68f ;;
  food101) fetch http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz 85eeb15f3717b99a5da872d97d918f87 ;;
  dtd) fetch https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz fff73e5086ae6bdbea199a49dfb8a4c1 ;;
  eurosat) fetch https://huggingface.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip c8fa014336c82ac7804f0398fcb19387 ;;
esac
echo "done: $what in $dest (data.dataset: $what, data.root: $dest)"
