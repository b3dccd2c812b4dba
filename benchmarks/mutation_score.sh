#!/usr/bin/env bash
# Mutation score of the pure core (issue 27), measured with mutmut 3.x.
#
#   pip install -e ".[mutation]"                  # the test extra + mutmut 3.8.1 (pinned; not in `test`)
#   bash benchmarks/mutation_score.sh             # every group (over an hour on 2 shared cores)
#   bash benchmarks/mutation_score.sh boxes frame # some groups
#   bash benchmarks/mutation_score.sh --rev main  # the tests and code of a commit (e.g. a "before" score)
#   MUTATION_WORKDIR=DIR bash benchmarks/mutation_score.sh --resume GROUP  # after adding tests: re-run
#       only the mutants DIR/GROUP's last run left alive (and not listed as equivalent), against the
#       tree's current tests (tests that were only added cannot revive a killed mutant). It sees new
#       test functions in the group's test files; a new test file needs a full run (mutmut keeps the
#       run's test selection, and changing it resets every result).
#   MUTATION_WORKDIR=DIR bash benchmarks/mutation_score.sh --report [GROUP...]  # print DIR's last results
#
# Groups and what they mutate: rewards (verl_perception/rewards/), parsing (parsing.py), frame
# (frame.py), boxes (boxes.py), metrics (verl_perception/metrics/). Each group runs in its own
# throwaway copy of the tree with only its own tests selected (GROUP_TESTS below); mutmut then runs,
# per mutant, only the tests that call the mutated function. Prints killed / survived / total and
# the killed share per group, and every survivor marked either "justified equivalent" (listed with
# its reason in benchmarks/mutation_equivalents.txt, explained in docs/testing.md) or "UNJUSTIFIED".
# A timeout counts as killed (the mutant made the tests hang or crawl: it was detected). The score is
# killed / (total - justified equivalents), the usual definition of the mutation score.
# Targets: >= 95% killed on rewards, parsing, frame and boxes; >= 90% on metrics. Exit status: 0 when
# every group meets its target on that score and every survivor is justified, 1 otherwise, 2 on a setup error.
# Environment: MUTATION_JOBS (parallel mutants, default: the CPU count), MUTATION_WORKDIR (where the
# copies go; kept afterwards so that `cd $MUTATION_WORKDIR/GROUP && mutmut show NAME` works).
set -euo pipefail
main() {  # the whole script is read before it runs: editing it meanwhile cannot derail a run
cd "$(dirname "$0")/.."
ROOT=$PWD

REV=""
RESUME=0
REPORT_ONLY=0
GROUPS_ASKED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) REV="$2"; shift 2 ;;
        --resume) RESUME=1; shift ;;
        --report) REPORT_ONLY=1; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) GROUPS_ASKED+=("$1"); shift ;;
    esac
done

declare -A GROUP_MUTATE=(
    [rewards]="verl_perception/rewards/*"
    [parsing]="verl_perception/parsing.py"
    [frame]="verl_perception/frame.py"
    [boxes]="verl_perception/boxes.py"
    [metrics]="verl_perception/metrics/*"
)
# The group's own tests (globs, relative to the tree; a glob that matches nothing is dropped).
declare -A GROUP_TESTS=(
    [rewards]="tests/test_rewards_*.py tests/test_oracle_rewards*.py tests/test_oracle_boxes.py tests/test_oracle_coco_ap.py"
    [parsing]="tests/test_parsing.py tests/test_rewards_*.py tests/test_oracle_rewards*.py tests/test_oracle_parsing.py tests/test_bad_input_rewards.py"
    [frame]="tests/test_data_frame.py tests/test_data_frame_families.py tests/test_eval_frame.py tests/test_rewards_families.py tests/test_oracle_frame.py"
    [boxes]="tests/test_rewards_boxes.py tests/test_rewards_grounding.py tests/test_rewards_detection.py tests/test_rewards_properties.py tests/test_oracle_boxes.py tests/test_oracle_rewards*.py"
    [metrics]="tests/test_eval_detection.py tests/test_eval_grounding_counting.py tests/test_eval_ocr.py tests/test_eval_frame.py tests/test_oracle_metrics*.py tests/test_oracle_coco_ap.py"
)
declare -A GROUP_TARGET=([rewards]=95 [parsing]=95 [frame]=95 [boxes]=95 [metrics]=90)
ALL_GROUPS=(rewards parsing frame boxes metrics)
[ ${#GROUPS_ASKED[@]} -eq 0 ] && GROUPS_ASKED=("${ALL_GROUPS[@]}")
for g in "${GROUPS_ASKED[@]}"; do
    if [ -z "${GROUP_MUTATE[$g]-}" ]; then
        echo "error: unknown group '$g'; choose from: ${ALL_GROUPS[*]}" >&2
        exit 2
    fi
done

if ! python -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("mutmut").split(".")[0] == "3" else 1)' 2>/dev/null; then
    echo "error: mutmut 3.x is not installed in this Python ($(command -v python)); install it with: pip install -e \".[mutation]\"" >&2
    exit 2
fi

if ! python -c 'import sys; from verl_perception.metrics.wordnet import load_wordnet; sys.exit(load_wordnet()[0] is None)' 2>/dev/null; then
    echo "warning: no WordNet 3.0 database (apt-get install wordnet-base, or VERL_PERCEPTION_WORDNET_DIR):" \
        "the METEOR tests skip, so metrics/wordnet.py's mutants have no tests" >&2
fi

WORK=${MUTATION_WORKDIR:-$(mktemp -d -t mutation_score.XXXXXX)}
JOBS=${MUTATION_JOBS:-$(nproc)}
mkdir -p "$WORK"
# One thread per mutant: the machine's cores go to parallel mutants, and torch's thread pool does
# not survive mutmut's fork (a child would hang until its timeout).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# The copies must import their own mutated package: an exported PYTHONPATH (e.g. a worktree root)
# would shadow it and every mutant would "survive".
unset PYTHONPATH

for g in "${GROUPS_ASKED[@]}"; do
    dst="$WORK/$g"
    if [ "$REPORT_ONLY" = 1 ]; then
        [ -f "$dst/mutmut_results.txt" ] || { echo "error: no results in $dst (set MUTATION_WORKDIR)" >&2; exit 2; }
        continue
    fi
    if [ "$RESUME" = 1 ]; then
        if [ ! -f "$dst/mutmut_results.txt" ]; then
            echo "error: --resume needs a finished run in $dst (set MUTATION_WORKDIR to its parent)" >&2
            exit 2
        fi
        rm -rf "$dst/tests"
        git ls-files -z --cached --others --exclude-standard tests | tar --null -T - -cf - | tar -xf - -C "$dst"
        cp "$ROOT/benchmarks/mutation_fresh_caches.py" "$dst/"
        # the survivors not already listed as equivalent
        mapfile -t alive < <(grep -vE ': (killed|timeout)$' "$dst/mutmut_results.txt" | sed -E 's/^ *//; s/: [a-z ]+$//' \
            | grep -vxF -f <(awk '!/^#/ && NF {print $1}' "$ROOT/benchmarks/mutation_equivalents.txt") || true)
        echo "::: $g: re-running ${#alive[@]} surviving mutants against the current tests ($dst)" >&2
        if [ ${#alive[@]} -gt 0 ]; then
            (cd "$dst" && mutmut run --max-children "$JOBS" "${alive[@]}" >"$dst/mutmut_resume.log" 2>&1) || {
                echo "error: mutmut run failed for group $g; see $dst/mutmut_resume.log" >&2
                tail -n 20 "$dst/mutmut_resume.log" >&2
                exit 2
            }
            (cd "$dst" && mutmut results --all true >"$dst/mutmut_results.txt")
        fi
        continue
    fi
    rm -rf "$dst"
    mkdir -p "$dst"
    if [ -n "$REV" ]; then
        git archive "$REV" | tar -x -C "$dst"
    else
        git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$dst"
    fi
    # mutmut forks each mutant from a process that has run the tests once: without this plugin
    # the package's memo caches would be warm there, and a mutant in a function behind a cache
    # would never run.
    cp "$ROOT/benchmarks/mutation_fresh_caches.py" "$dst/"
    tests=()
    for pattern in ${GROUP_TESTS[$g]}; do
        for f in "$dst"/$pattern; do
            [ -f "$f" ] && tests+=("${f#"$dst"/}")
        done
    done
    {
        echo "[mutmut]"
        echo "source_paths = verl_perception"
        echo "only_mutate = ${GROUP_MUTATE[$g]}"
        echo "pytest_add_cli_args_test_selection ="
        printf '    %s\n' "${tests[@]}"
        echo "pytest_add_cli_args ="
        # -n 0: in-process (pyproject's addopts run the suite on pytest-xdist workers; mutmut forks per mutant)
        printf '    %s\n' -p no:cacheprovider -p mutation_fresh_caches -n 0
        echo "also_copy ="
        echo "    mutation_fresh_caches.py"
    } >"$dst/setup.cfg"
    echo "::: $g: mutating ${GROUP_MUTATE[$g]} against ${#tests[@]} test files ($dst)" >&2
    start=$(date +%s)
    (cd "$dst" && mutmut run --max-children "$JOBS" >"$dst/mutmut_run.log" 2>&1) || {
        echo "error: mutmut run failed for group $g; see $dst/mutmut_run.log" >&2
        tail -n 20 "$dst/mutmut_run.log" >&2
        exit 2
    }
    (cd "$dst" && mutmut results --all true >"$dst/mutmut_results.txt")
    echo "::: $g: done in $(( $(date +%s) - start )) s" >&2
done

python - "$WORK" "$ROOT/benchmarks/mutation_equivalents.txt" "${GROUPS_ASKED[@]}" <<'EOF'
import sys
from collections import Counter
from pathlib import Path

work, equivalents_path, *groups = sys.argv[1:]
targets = {"rewards": 95, "parsing": 95, "frame": 95, "boxes": 95, "metrics": 90}
# "NAME  reason..." per line; '#' starts a comment line.
equivalent = {}
for line in Path(equivalents_path).read_text().splitlines():
    if line.strip() and not line.lstrip().startswith("#"):
        name, _, reason = line.strip().partition(" ")
        equivalent[name] = reason.strip()
ok = True
rows = []
survivors = []
for g in groups:
    statuses = {}
    for line in (Path(work) / g / "mutmut_results.txt").read_text().splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    by_module = {}
    for name, status in statuses.items():
        by_module.setdefault(name.rsplit(".", 1)[0], Counter())[status] += 1
    eq_by_module = Counter(n.rsplit(".", 1)[0] for n, st in statuses.items()
                           if st not in ("killed", "timeout") and n in equivalent)
    for module in sorted(by_module) + [f"{g} (all)"]:
        c = by_module.get(module) or sum(by_module.values(), Counter())
        eq = eq_by_module[module] if module in by_module else sum(eq_by_module.values())
        killed = c["killed"] + c["timeout"]
        total = sum(c.values())
        other = total - killed - c["survived"]
        pct = 100.0 * killed / total if total else 100.0
        # the mutation score: killed over the mutants that are not equivalent
        score = 100.0 * killed / (total - eq) if total > eq else 100.0
        mark = ""
        if module.endswith("(all)"):
            met = score >= targets[g]
            ok &= met
            mark = f"target >= {targets[g]}%: {'met' if met else 'MISSED'}"
        rows.append((module, killed, c["survived"], eq, other, total, pct, score, mark))
    for name, status in sorted(statuses.items()):
        if status not in ("killed", "timeout"):
            reason = equivalent.get(name)
            ok &= reason is not None
            label = f"justified equivalent: {reason}" if reason else "UNJUSTIFIED"
            survivors.append(f"  [{g}] {name}: {status}; {label}")
print(f"{'module':44s} {'killed':>7s} {'survived':>8s} {'equiv.':>6s} {'other':>5s} {'total':>6s} {'killed %':>8s} "
      f"{'score':>7s}")
for module, killed, survived, eq, other, total, pct, score, mark in rows:
    print(f"{module:44s} {killed:7d} {survived:8d} {eq:6d} {other:5d} {total:6d} {pct:7.1f}% {score:6.1f}%  {mark}")
print("(killed includes timeouts; equiv.: survivors listed as justified equivalents; other: no tests / suspicious /"
      " skipped; score = killed / (total - equiv.), the mutation score the targets apply to)")
print(f"survivors ({len(survivors)}):")
print("\n".join(survivors) if survivors else "  none")
sys.exit(0 if ok else 1)
EOF
}
main "$@"
