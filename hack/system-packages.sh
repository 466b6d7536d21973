#!/usr/bin/env bash
# Installs the Debian packages the project needs and that are missing (a no-op when all are
# there): openssl (cluster certificates), g++/ninja (DeepSpeed's CPU ops in the workload
# tests), and for the real node containerd, runc, CNI plugins, iptables, conntrack, plus
# debootstrap/umoci/skopeo/buildah/gcc to build images without a registry or a Docker engine.
# apt knows where its mirror is; nothing here names one.
set -euo pipefail
pkgs=(openssl ninja-build g++ curl ca-certificates
      containerd runc containernetworking-plugins iptables conntrack
      debootstrap buildah umoci skopeo gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
(( ${#missing[@]} )) || exit 0
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${missing[*]} (install them as root with apt-get)" >&2
  exit 1
fi
echo "[system-packages] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
