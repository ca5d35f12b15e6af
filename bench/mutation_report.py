"""Mutation testing of the modules that decide what a robot sees, with mutmut (PyPI), one module at a
time against its own test files; prints the kill ratio per module and every surviving mutant.

Run through bench/mutation.sh (it checks the environment and installs mutmut if asked). Opt-in, not
in CI: the whole pass takes a long while on 2 cores (each mutant runs the tests that reach the
mutated function, in a forked process). Nothing in the working tree is touched: the tree is copied
to --workdir (default /tmp/lang_seg_ros_mutation) and mutmut runs there, one module at a time.

    python bench/mutation_report.py                            # all modules, at most 150 mutants each
    python bench/mutation_report.py --max-mutants 0            # every mutant (hours)
    python bench/mutation_report.py --modules inference/decide.py objects/regions.py
    python bench/mutation_report.py --report-only              # re-read the last run's results

Counting: killed = a test failed (or the tests ran past mutmut's time limit, or crashed); survived =
every test passed, including mutants no selected test reaches ("no tests"). Equivalent mutants (no
observable change: listed, each with the reason, in bench/mutation_equivalent.yaml, matched on the
changed lines) are excluded. Kill ratio = killed / (mutants checked - equivalent).
With --max-mutants N a module with more mutants is sampled: N of them, chosen with --seed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_FILE = ROOT / "bench" / "mutation_equivalent.yaml"

#: module (under lang_seg_ros/) -> its own test files (those that do not exist yet are left out)
MODULES: dict[str, list[str]] = {
    "inference/decide.py": ["test/test_decide.py", "test/test_decide_chunks.py", "test/test_decide_factored.py"],
    "inference/backends/graphs.py": ["test/test_traced_branch.py"],
    "inference/labels.py": ["test/test_labels.py", "test/test_label_text_bounds.py"],
    "inference/preprocess.py": ["test/test_preprocess.py", "test/test_fast_frame_paths.py"],
    "objects/regions.py": ["test/test_regions.py", "test/test_regions_rules.py", "test/test_fast_frame_paths.py"],
    "objects/instances.py": ["test/test_instances.py", "test/test_instances_speed_equivalence.py",
                             "test/test_fast_frame_paths.py"],
    "objects/geometry.py": ["test/test_geometry.py", "test/test_geometry_rule.py",
                            "test/test_panoptic_geometry_tracking.py"],
    "objects/navigation.py": ["test/test_navigation.py", "test/test_navigation_rules.py", "test/test_geometry_rule.py"],
    "referring/select.py": ["test/test_referring.py", "test/test_select.py"],
    "model/grounding.py": ["test/test_grounding.py"],
    "model/bert.py": ["test/test_sentence_text.py"],
    "model/efficientnet_lite.py": ["test/test_timm_cnn.py"],
    "model/checkpoint.py": ["test/test_checkpoint.py", "test/test_checkpoint_details.py",
                            "test/test_hostile_checkpoints.py", "test/test_model_layout.py"],
    "ros/image_conversion.py": ["test/test_image_conversion.py", "test/test_image_conversion_edges.py",
                                "test/test_image_frames.py"],
}

KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
CRASH = {-11, -9}
NO_TESTS = {33, 5}
SURVIVED = {0}


def copy_tree(dst: Path) -> None:
    """The working tree without the virtual environment, git data, build outputs and caches."""
    skip = {".venv", ".git", "build", "mutants", "__pycache__", ".pytest_cache", "lang_seg_ros.egg-info"}
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(ROOT, dst, ignore=lambda _, names: [n for n in names if n in skip])


def write_config(sandbox: Path, module: str, tests: list[str]) -> None:
    lines = ["[mutmut]", "source_paths=lang_seg_ros", f"only_mutate=lang_seg_ros/{module}",
             "pytest_add_cli_args_test_selection=", *(f"    {t}" for t in tests),
             # the test order is mutmut's (slowest tests last); pytest-randomly would shuffle it
             "pytest_add_cli_args=", "    -p", "    no:randomly", "    -p", "    no:cacheprovider",
             # torch is not fork-safe once it has run: fork the workers from a clean server process
             "process_isolation=forkserver", "use_git_change_detection=false",
             # data files some tests read (wording sets: model/grounding.py's tests)
             "also_copy=", "    configs", ""]
    (sandbox / "setup.cfg").write_text("\n".join(lines))


def run_mutmut(sandbox: Path, args: list[str], log, timeout: float) -> int:
    """`python -m mutmut ARGS` in the sandbox, in its own process group, killed after `timeout` s."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", *args], cwd=sandbox, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"    stopped after {timeout:.0f} s: the mutants not reached count as not checked")
        return -1


def meta_path(sandbox: Path, module: str) -> Path:
    return sandbox / "mutants" / "lang_seg_ros" / (module + ".meta")


def load_results(sandbox: Path, module: str) -> dict[str, int | None]:
    path = meta_path(sandbox, module)
    return json.loads(path.read_text())["exit_code_by_key"] if path.exists() else {}


def changed_lines(sandbox: Path, module: str, name: str) -> tuple[list[str], list[str], str]:
    """(removed lines, added lines, unified diff) of one mutant, read with mutmut's own differ."""
    cwd = os.getcwd()
    os.chdir(sandbox)
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        diff = get_diff_for_mutant(name, path=f"lang_seg_ros/{module}")
    finally:
        os.chdir(cwd)
    body = diff.splitlines()[2:]
    return ([line[1:].strip() for line in body if line.startswith("-")],
            [line[1:].strip() for line in body if line.startswith("+")], diff)


def load_equivalents() -> list[dict]:
    import yaml

    if not EQUIVALENT_FILE.exists():
        return []
    entries = yaml.safe_load(EQUIVALENT_FILE.read_text()) or []
    for entry in entries:
        for key in ("module", "original", "mutant", "why"):
            if key not in entry:
                raise ValueError(f"{EQUIVALENT_FILE}: an entry lacks {key!r}: {entry}")
    return entries


def _lines(value) -> list[str]:
    """An entry's `original` or `mutant`: one line, several, or none ("" or null: a deleted line)."""
    return [] if value in ("", None) else [value] if isinstance(value, str) else list(value)


def stale_equivalents(entries: list[dict]) -> list[dict]:
    """Entries whose original lines are no longer in their module: they can never match a mutant
    again (the line changed or moved), so they only hide the file's live reasons."""
    stale = []
    for entry in entries:
        path = ROOT / "lang_seg_ros" / entry["module"]
        source = {line.strip() for line in path.read_text().splitlines()} if path.exists() else set()
        if not all(line.strip() in source for line in _lines(entry["original"])):
            stale.append(entry)
    return stale


def equivalent_reason(module: str, removed: list[str], added: list[str], entries: list[dict]) -> str | None:
    for entry in entries:
        original, mutant = _lines(entry["original"]), _lines(entry["mutant"])
        if entry["module"] == module and [o.strip() for o in original] == removed and \
                [m.strip() for m in mutant] == added:
            return entry["why"]
    return None


def summarise(sandbox: Path, module: str, chosen: list[str] | None, entries: list[dict]) -> dict:
    results = load_results(sandbox, module)
    if chosen is not None:
        results = {k: v for k, v in results.items() if k in set(chosen)}
    row = {"module": module, "generated": len(load_results(sandbox, module)), "mutants": len(results),
           "killed": 0, "timeout": 0, "survived": 0, "no_tests": 0, "not_checked": 0, "equivalent": 0,
           "survivors": [], "equivalents": []}
    for name, code in sorted(results.items(), key=lambda kv: _mutant_order(kv[0])):
        if code is None:
            row["not_checked"] += 1
            continue
        if code in KILLED or code in CRASH:
            row["killed"] += 1
            continue
        if code in TIMEOUT:
            row["timeout"] += 1
            continue
        removed, added, diff = changed_lines(sandbox, module, name)
        why = equivalent_reason(module, removed, added, entries)
        if why is not None:
            row["equivalent"] += 1
            row["equivalents"].append({"name": name, "diff": diff, "why": why})
            continue
        row["no_tests" if code in NO_TESTS else "survived"] += 1
        row["survivors"].append({"name": name, "exit_code": code, "removed": removed, "added": added,
                                 "status": "no tests" if code in NO_TESTS else "survived"})
    counted = row["killed"] + row["timeout"] + row["survived"] + row["no_tests"]
    row["ratio"] = (row["killed"] + row["timeout"]) / counted if counted else float("nan")
    return row


def _mutant_order(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def print_table(rows: list[dict]) -> None:
    header = ("module", "mutants", "killed", "survived", "equivalent", "not checked", "kill ratio")
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    total = dict.fromkeys(("mutants", "killed", "survived", "equivalent", "not_checked"), 0)
    for row in rows:
        killed = row["killed"] + row["timeout"]
        survived = row["survived"] + row["no_tests"]
        sampled = f" of {row['generated']}" if row["generated"] != row["mutants"] else ""
        timeouts = f" ({row['timeout']} by timeout)" if row["timeout"] else ""
        print(f"| {row['module']} | {row['mutants']}{sampled} | {killed}{timeouts} | {survived} | {row['equivalent']} "
              f"| {row['not_checked']} | {row['ratio']:.1%} |")
        for key, value in (("mutants", row["mutants"]), ("killed", killed), ("survived", survived),
                           ("equivalent", row["equivalent"]), ("not_checked", row["not_checked"])):
            total[key] += value
    counted = total["killed"] + total["survived"]
    print(f"| all | {total['mutants']} | {total['killed']} | {total['survived']} | {total['equivalent']} | "
          f"{total['not_checked']} | {total['killed'] / counted if counted else float('nan'):.1%} |")


def print_survivors(rows: list[dict]) -> None:
    for row in rows:
        if not row["survivors"]:
            continue
        print(f"\nsurviving mutants of lang_seg_ros/{row['module']}:")
        for s in row["survivors"]:
            print(f"  {s['name']} ({s['status']})")
            for line in s["removed"]:
                print(f"    - {line}")
            for line in s["added"]:
                print(f"    + {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="under lang_seg_ros/ (default: all)")
    parser.add_argument("--max-mutants", type=int, default=150, help="sample this many per module (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="of the sample")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (mutmut --max-children)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lang_seg_ros_mutation"))
    parser.add_argument("--report-only", action="store_true", help="only read the results of the last run")
    parser.add_argument("--json", type=Path, help="also write the table and survivors here")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(MODULES)}")
    entries = load_equivalents()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for module in args.modules:
        sandbox = args.workdir / module.replace("/", "_").removesuffix(".py")
        tests = [t for t in MODULES[module] if (ROOT / t).exists()]
        chosen_file = sandbox / "chosen_mutants.json"
        if not args.report_only:
            print(f"== lang_seg_ros/{module} against {' '.join(tests)}", flush=True)
            copy_tree(sandbox)
            # data sets and design files the tests find beside the checkout (../shared): beside the
            # copy, and beside mutmut's copy of it (sandbox/mutants)
            shared = ROOT.parent / "shared"
            for beside in (args.workdir / "shared", sandbox / "shared"):
                if shared.is_dir() and not beside.exists():
                    beside.symlink_to(shared)
            write_config(sandbox, module, tests)
            started = time.monotonic()
            with open(sandbox / "mutmut.log", "w") as log:
                chosen = None
                if args.max_mutants > 0:
                    # generate the mutants (and the test-to-function map) without testing any
                    run_mutmut(sandbox, ["run", "--max-children", "1", "__list_only__"], log, args.timeout)
                    names = sorted(load_results(sandbox, module), key=_mutant_order)
                    if len(names) > args.max_mutants:
                        chosen = sorted(random.Random(args.seed).sample(names, args.max_mutants), key=_mutant_order)
                        print(f"    {len(names)} mutants: testing a sample of {len(chosen)} (seed {args.seed})")
                remaining = args.timeout - (time.monotonic() - started)
                run_mutmut(sandbox, ["run", "--max-children", str(args.jobs), *(chosen or [])], log, remaining)
            chosen_file.write_text(json.dumps(chosen))
            print(f"    {time.monotonic() - started:.0f} s; log: {sandbox / 'mutmut.log'}", flush=True)
        chosen = json.loads(chosen_file.read_text()) if chosen_file.exists() else None
        if not meta_path(sandbox, module).exists():
            print(f"    no results for {module} (see {sandbox / 'mutmut.log'})")
            continue
        rows.append(summarise(sandbox, module, chosen, entries))
    print_table(rows)
    print_survivors(rows)
    for entry in stale_equivalents(entries):
        print(f"stale entry in {EQUIVALENT_FILE.name} (its original line is gone from {entry['module']}): "
              f"{entry['original']!r}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
