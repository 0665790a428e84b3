#!/usr/bin/env bash
# Runs the project's pinned Zig with the given arguments: the `ziglang` package from PyPI, run
# as `python3 -m ziglang`. The first call installs it with pip into a directory of its own,
# named after the version (~/.cache/goo-memory/ziglang-<version>, or $GOO_ZIG_HOME), so it
# touches no Python environment and another pinned version can sit beside it.
#   scripts/zig.sh version
#   cd bindings/zig && ../../scripts/zig.sh build test
set -euo pipefail

ZIG_VERSION=0.17.1

home="${GOO_ZIG_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/goo-memory/ziglang-$ZIG_VERSION}"
if [ ! -f "$home/ziglang/__main__.py" ]; then
  echo "scripts/zig.sh: installing ziglang==$ZIG_VERSION into $home" >&2
  mkdir -p "$(dirname "$home")"
  # Into a fresh directory first, then renamed: an interrupted or concurrent install never
  # leaves a half-filled $home behind.
  staging=$(mktemp -d "$home.partial.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore --target "$staging" "ziglang==$ZIG_VERSION"
  mv -T "$staging" "$home" 2>/dev/null || [ -f "$home/ziglang/__main__.py" ]
  trap - EXIT
  rm -rf "$staging"
fi
PYTHONPATH="$home${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m ziglang "$@"
