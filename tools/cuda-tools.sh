#!/usr/bin/env bash
# Prints a folder holding NVIDIA's offline ptxas, cuobjdump and nvdisasm (CUDA 11.8 from Debian 12's non-free
# nvidia-cuda-toolkit package: the one .deb is downloaded and only these three programs are unpacked, about
# 70 MB; nothing is installed and they need only libc). `engine kernels` and the assembler tests look in
# ${CUDA_TOOLS_DIR:-/tmp/cuda-tools}/usr/bin. Needs root for apt on a machine without non-free sources.
set -euo pipefail
dest=${CUDA_TOOLS_DIR:-/tmp/cuda-tools}
if [ -x "$dest/usr/bin/ptxas" ] && [ -x "$dest/usr/bin/nvdisasm" ]; then echo "$dest/usr/bin"; exit 0; fi
mkdir -p "$dest"
policy=$(apt-cache policy nvidia-cuda-toolkit 2>/dev/null || true)   # not piped into grep -q: pipefail + SIGPIPE
if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
  # Debian's non-free component on the mirror the machine already uses.
  uri=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}')
  if [ -z "$uri" ]; then
    echo "cuda-tools.sh: no Debian apt source found; install a CUDA toolkit and set CUDA_HOME instead" >&2
    exit 1
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    > /etc/apt/sources.list.d/engine-non-free.sources
  apt-get update -qq >&2
fi
( cd "$dest" && apt-get download -qq nvidia-cuda-toolkit >&2 )
deb=$(ls "$dest"/nvidia-cuda-toolkit_*.deb | head -n 1)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" ./usr/bin/ptxas ./usr/bin/cuobjdump ./usr/bin/nvdisasm
rm -f "$deb"
echo "$dest/usr/bin"
