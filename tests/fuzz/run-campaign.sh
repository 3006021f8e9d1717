#!/bin/sh
# run-campaign.sh BINDIR SECONDS [HARNESS...] - fuzzes each harness (default:
# all four) for SECONDS with the libFuzzer binaries build.sh wrote to BINDIR,
# starting from tests/fuzz/corpus/<harness>, then minimises the corpus with
# -merge=1 (the seed-* files are always kept) and writes it back.
#
# Runs in fork mode (one worker) so that a crash, leak, OOM or timeout is
# saved and fuzzing goes on; every artefact is kept under
# $WORK/<harness>/artifacts (WORK defaults to /tmp/ckptfs-fuzz-work) for
# triage: copy one reproducer per distinct bug into tests/fuzz/crashers/<harness>/.
# A summary line per harness (executions, cov, ft of the run and of the final
# corpus, corpus files and bytes, artefacts) is printed at the end and appended to $WORK/summary.txt.
#
# Limits: -rss_limit_mb=2048 -timeout=10 (override with FUZZ_ARGS); the merge
# counts edges only (-use_counters=0, override with FUZZ_MERGE_ARGS), which
# keeps the committed corpus small.  Inputs that crash the build under test
# are left out of the merged corpus (libFuzzer skips them), so build the
# binaries from the tree the corpus will be replayed against.
# Two campaigns in parallel at most on a 2-core machine.
set -eu
bindir=${1:?usage: run-campaign.sh BINDIR SECONDS [HARNESS...]}
secs=${2:?usage: run-campaign.sh BINDIR SECONDS [HARNESS...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-/tmp/ckptfs-fuzz-work}
[ $# -gt 0 ] || set -- pickle item metadata safetensors
limits=${FUZZ_ARGS:--rss_limit_mb=2048 -timeout=10}
# the merge keeps inputs that add edges (not hit counts): a small corpus
merge_args=${FUZZ_MERGE_ARGS:--use_counters=0}

for h in "$@"; do
	bin=$bindir/fuzz-$h
	[ -x "$bin" ] || { echo "run-campaign: $bin missing (run build.sh)" >&2; exit 1; }
	corpus=$here/corpus/$h
	w=$work/$h
	mkdir -p "$corpus" "$w/new" "$w/artifacts"
	case $h in
	safetensors) dict=$here/safetensors.dict maxlen=8192 ;;
	metadata) dict=$here/pickle.dict maxlen=24576 ;;
	dir) dict=$here/pickle.dict maxlen=131072 ;;
	*) dict=$here/pickle.dict maxlen=8192 ;;
	esac
	echo "== $h: fuzzing for $secs s" >&2
	# new units go to $w/new (first corpus dir); the committed corpus is read
	"$bin" $limits -max_total_time="$secs" -fork=1 -ignore_crashes=1 -ignore_ooms=1 \
		-ignore_timeouts=1 -dict="$dict" -max_len=$maxlen \
		-artifact_prefix="$w/artifacts/" "$w/new" "$corpus" >"$w/fuzz.log" 2>&1 || true
	stats=$(grep -E '^#[0-9]+: cov:' "$w/fuzz.log" | tail -1)
	# minimise: seeds first, then whatever adds coverage to them
	rm -rf "$w/merged" && mkdir -p "$w/merged" "$w/rest"
	cp "$corpus"/seed-* "$w/merged/" 2>/dev/null || true
	find "$corpus" -maxdepth 1 -type f ! -name 'seed-*' -exec cp {} "$w/rest/" \;
	"$bin" $limits $merge_args -merge=1 -artifact_prefix="$w/artifacts/" "$w/merged" "$w/rest" \
		"$w/new" >"$w/merge.log" 2>&1 || {
		echo "run-campaign: merge of $h failed, corpus left as it was (see $w/merge.log)" >&2
		continue
	}
	find "$corpus" -maxdepth 1 -type f ! -name 'seed-*' -delete
	find "$w/merged" -maxdepth 1 -type f ! -name 'seed-*' -exec cp {} "$corpus/" \;
	rm -rf "$w/rest" "$w/new"
	# coverage of the final corpus, as a plain run reports it
	final=$("$bin" $limits -runs=0 -artifact_prefix="$w/artifacts/" "$corpus" 2>&1 | grep -E '^#[0-9]+[[:space:]]+INITED' | sed 's/.*INITED //') || final=?
	files=$(find "$corpus" -type f | wc -l)
	bytes=$(find "$corpus" -type f -exec cat {} + | wc -c)
	arts=$(find "$w/artifacts" -type f | wc -l)
	line="$h: $secs s | last fork stats: $stats | final corpus: $final; $files files, $bytes bytes | artefacts: $arts"
	echo "$line"
	echo "$(date -u +%FT%TZ) $line" >>"$work/summary.txt"
done
