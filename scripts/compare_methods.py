#!/usr/bin/env python3
"""Compares one method against the others, seed by seed, from `flotilla run` outputs.

For each output folder (read: its summary.json), prints each method's final accuracy of the
model it reports (the target `wl`; `weak_only`: the auxiliary `ws`) per seed with mean and
standard deviation, then the reference method's per-seed difference to every other method:
mean ± std and on how many seeds it is ahead. Runs whose reported model is not a result
(diverged, never updated) are named and left out of every number, never counted as a seed.

With --merge the folders are read as one experiment (e.g. one method per folder, one
folder per setting): a method found in several folders is named `method@FOLDER`, and
METHOD may name one such (`--against ondevice_kd@out-k10`).

Usage: compare_methods.py OUT [OUT ...] [--against METHOD] [--merge]
       (default METHOD: ondevice_kd)
"""

import json
import statistics
import sys


def final_accuracies(out):
    """{method: {seed: accuracy %}} over result runs, and the runs that are not results."""
    summary = json.load(open(f"{out}/summary.json"))
    reported = {m["method"]: m["reported_model"] for m in summary["methods"]}
    results, excluded = {}, []
    for run in summary["runs"]:
        method, seed = run["method"], run["seed"]
        model = reported[method]
        verdict = run["verdicts"][model]["status"]
        if verdict != "ok":
            excluded.append(f"{method} seed {seed}: {verdict}")
            continue
        results.setdefault(method, {})[seed] = 100 * run["models"][model]["final_accuracy"]
    return results, excluded


def merged(experiments):
    """The folders' results as one experiment; a method found in several is `method@OUT`."""
    folders_of = {}
    for out, results, _ in experiments:
        for method in results:
            folders_of.setdefault(method, []).append(out)
    results, excluded = {}, []
    for out, by_method, not_results in experiments:
        excluded += [f"{line} ({out})" for line in not_results]
        for method, by_seed in by_method.items():
            name = method if len(folders_of[method]) == 1 else f"{method}@{out}"
            results[name] = by_seed
    return " + ".join(out for out, _, _ in experiments), results, excluded


def mean_std(values):
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "—"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv):
    reference = "ondevice_kd"
    if "--against" in argv:
        i = argv.index("--against")
        reference = argv[i + 1]
        del argv[i : i + 2]
    merge = "--merge" in argv
    if merge:
        argv.remove("--merge")
    if not argv or any(a.startswith("--") for a in argv):
        sys.exit(__doc__)
    for out in argv:
        try:
            open(f"{out}/summary.json").close()
        except OSError as e:
            sys.exit(f"{out}: not a `flotilla run` output folder ({e.strerror}: {e.filename})")
    experiments = [(out, *final_accuracies(out)) for out in argv]
    if merge:
        experiments = [merged(experiments)]
    for out, results, excluded in experiments:
        print(f"== {out}")
        for method, by_seed in results.items():
            seeds = " ".join(f"{by_seed[s]:.2f}" for s in sorted(by_seed))
            print(f"  {method:<24} {mean_std(list(by_seed.values())):>14}   seeds: {seeds}")
        for line in excluded:
            print(f"  not a result: {line}")
        if reference not in results:
            names = ", ".join(results)
            print(f"  no {reference} to compare against (--against one of: {names})")
            continue
        ours = results[reference]
        for method, by_seed in results.items():
            if method == reference:
                continue
            seeds = sorted(set(ours) & set(by_seed))
            diffs = [ours[s] - by_seed[s] for s in seeds]
            ahead = sum(d > 0 for d in diffs)
            print(
                f"  {reference} − {method}: {mean_std(diffs)} points, ahead on "
                f"{ahead} of {len(seeds)} seeds"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
