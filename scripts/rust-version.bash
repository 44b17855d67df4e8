# Sourced by scripts/package and scripts/cross (not run on its own): the
# oldest Rust this workspace builds with is Cargo.toml's `rust-version`,
# and a compiler older than that is refused before anything builds, with
# the command that brings a newer one. Debian 12's package lists from
# before its rustc-web update still offer rustc-web 1.85, so an
# `apt-get install` without `apt-get update` first installs a compiler
# that cannot build the workspace (docs/release.md, "Building").
#
# require_rust_version WHO RUSTC
#   WHO    the script's name, at the head of the message
#   RUSTC  the compiler about to be used: a path, or a name on PATH
# Returns when `RUSTC --version` is at least rust-version; else prints
# why to stderr and exits 1.
require_rust_version() {
  local who="$1" rustc="$2" root needed path printed have
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  needed="$(sed -n 's/^rust-version = "\([0-9][0-9.]*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"
  if [ -z "$needed" ]; then
    echo "$who: no rust-version in $root/Cargo.toml" >&2
    exit 1
  fi
  if ! path="$(command -v "$rustc")"; then
    echo "$who: $rustc is missing: sudo apt-get update && sudo apt-get install rustc-web cargo-web rust-web-src" >&2
    exit 1
  fi
  printed="$("$path" --version 2>/dev/null || true)"
  have="$(sed -n 's/^rustc \([0-9][0-9.]*[0-9]\).*/\1/p' <<<"$printed" | head -n 1)"
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$needed" "$have" | sort -V | head -n 1)" = "$needed" ]; then
    return 0
  fi
  if [ -n "$have" ]; then
    echo "$who: rustc $have ($path) is older than Rust $needed, the oldest this workspace builds with (rust-version in Cargo.toml)" >&2
  else
    echo "$who: $path --version printed no rustc version (${printed:-nothing}); this workspace needs Rust $needed or newer (rust-version in Cargo.toml)" >&2
  fi
  case "$path" in
    "${CARGO_HOME:-$HOME/.cargo}"/bin/*)
      echo "update it with: rustup update stable" >&2 ;;
    *)
      echo "Debian 12's rustc-web is new enough in current package lists: sudo apt-get update && sudo apt-get install rustc-web cargo-web rust-web-src" >&2 ;;
  esac
  exit 1
}
