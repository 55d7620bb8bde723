#!/bin/bash
# Packs what experiments/gpu/verify.sh needs on a GPU machine that has nvcc, CMake and PyTorch but
# none of scion's other packages: the test, train, scion and bench_models binaries of a portable
# build (BUILD, default build/; no -march=native), the shared libraries they load that such a
# machine lacks (oneDNN, yaml-cpp, matio, Open MPI, ...; not glibc, not the driver, not cuDNN,
# cuBLAS or NCCL, which PyTorch's wheels bring there), and a small CIFAR-10 image folder (256 training and
# 100 test images per class, from ../shared/data/cifar10-jpg) for the 200-step training check.
# Output: .gpu/pack.tar.xz (32 MB at cf908cb; the carry limit is 64 MiB), ignored by git; carry
# `.gpu` to the device machine.
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-../shared/data/cifar10-jpg}
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/cifar10"
for b in scion_tests train scion bench_models; do
  cp "$BUILD/bin/$b" "$STAGE/bin/"
  strip "$STAGE/bin/$b"
done
ldd "$BUILD"/bin/{scion_tests,train,scion,bench_models} | awk '/=> \//{print $3}' | sort -u |
  while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libcuda.so* | \
        libcudnn* | libcublas* | libnccl* | libgcc_s.so* | libstdc++.so*) ;;
      *) cp -L "$lib" "$STAGE/lib/" ;;
    esac
  done
python3 - "$DATA" "$STAGE/cifar10" <<'PY'
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for split, per_class in (("train", 256), ("test", 100)):
    for cls in sorted(os.listdir(os.path.join(src, split))):
        os.makedirs(os.path.join(dst, split, cls))
        for name in sorted(os.listdir(os.path.join(src, split, cls)))[:per_class]:
            shutil.copy(os.path.join(src, split, cls, name), os.path.join(dst, split, cls, name))
PY
mkdir -p .gpu
tar -C "$STAGE" -cJf .gpu/pack.tar.xz .
ls -la .gpu/pack.tar.xz
