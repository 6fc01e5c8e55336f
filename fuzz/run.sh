#!/usr/bin/env bash
# Runs one fuzz target for a while: fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#
# Targets: deploy_file, store_body, store_patch, async_message (see docs/RELIABILITY.md, "Fuzzing").
# Exits non-zero when the target crashes; the input is then in fuzz/artifacts/TARGET/, and
# `fuzz/run.sh TARGET 0 fuzz/artifacts/TARGET/crash-…` replays it.
#
# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=address). There is only a stable
# toolchain here, so RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. The build is
# `--release` (-O) with AddressSanitizer; it lives in fuzz/target (the first build takes long:
# sled, axum, async-nats and OpenTelemetry are instrumented too).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer options...]}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer options...]}
shift 2
[ -f "fuzz_targets/$target.rs" ] || { echo "no fuzz target '$target' in fuzz/fuzz_targets" >&2; exit 2; }

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

# The store targets open a sled database in $TMPDIR: keep it in a directory removed afterwards.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work

case "$target" in
  async_message) dict=seeds/async_message.dict ;;
  *) dict=seeds/json.dict ;;
esac

# New inputs go to corpus/TARGET (not committed); seeds/TARGET is read only.
mkdir -p "corpus/$target" "artifacts/$target"
replay=()
if [ "$seconds" = 0 ]; then
  replay=("$@")
  set --
fi
if [ ${#replay[@]} -gt 0 ]; then
  exec cargo fuzz run -O "$target" "${replay[@]}"
fi
cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -dict="$dict" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$@"
