"""Vision tasks benchmark: the shipped image studies, run for real through ``tuner.run``.

``python bench/tasks_vision.py`` (or ``python -m bench.tasks_vision``) runs, one after the other
in one fresh SQLite storage (a temporary folder unless ``--keep DIR``):

1. ``studies/digits_cnn.yaml`` (a CNN on the 8x8 digits; target: test accuracy >= 0.985);
2. ``studies/resnet_pretrain.yaml`` (a ResNet on the digits 0-4);
3. ``studies/resnet_finetune.yaml`` (its best checkpoint fine-tuned on 45 images of the digits 5-9);
4. ``resnet_finetune_scratch``: the same study with no checkpoint and no freezing (same data,
   space, trials and seed), the baseline that fine-tuning should beat.

and prints a Markdown table (study, finished trials, best validation accuracy, test accuracy of
that best trial, wall time), also written to ``bench/results/tasks_vision-<stamp>.md``.
Exit code 1 when the digits CNN misses its target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._args import count, positive

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
STUDIES = REPO_ROOT / "studies"
DIGITS_CNN_TARGET = 0.985
ALL = ("digits_cnn", "resnet_pretrain", "resnet_finetune", "resnet_finetune_scratch")


def _spec(name: str, storage: str, artifacts: Path, n_trials: int | None) -> Any:
    """The validated spec of a shipped study (or of the scratch baseline derived from resnet_finetune)."""
    from tuner._yaml import load_yaml_file
    from tuner.exceptions import SpecError
    from tuner.spec import spec_from_mapping

    file = STUDIES / f"{'resnet_finetune' if name == 'resnet_finetune_scratch' else name}.yaml"
    data = dict(load_yaml_file(file, source=str(file), error=SpecError))
    if name == "resnet_finetune_scratch":
        data["name"] = name
        data["task_args"] = {k: v for k, v in data["task_args"].items() if k != "pretrained"}
        data["search_space"] = {"include": ["finetune.yaml"],
                                "params": {"freeze_stages": 0, "backbone_lr_frac": 1.0, "head_init": "random"}}
    overrides: dict[str, Any] = {"artifacts_dir": str(artifacts), "storage": storage}
    if n_trials:
        overrides["n_trials"] = n_trials
    return spec_from_mapping(data, source=str(file.relative_to(REPO_ROOT)), base_dir=STUDIES, overrides=overrides)


def _row(name: str, storage: str, wall: float) -> dict[str, Any]:
    import tuner

    study = tuner.load_study(name, storage)
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = study.best_trial
    metrics = best.system_attrs.get("tuner:metrics") or {}
    return {"study": name, "complete": states.get("COMPLETE", 0), "pruned": states.get("PRUNED", 0),
            "failed": states.get("FAIL", 0), "best_val": best.value, "test": metrics.get("test_accuracy"),
            "best_trial": best.number, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tasks_vision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", default=",".join(ALL), help=f"comma-separated, from {', '.join(ALL)}")
    parser.add_argument("--n-trials", type=count(1), default=None, help="override every study's n_trials")
    parser.add_argument("--num-cpus", type=positive, default=None, help="size of the local Ray instance")
    parser.add_argument("--keep", type=Path, default=None, help="keep the storage and checkpoints in this folder")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.studies.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown study {unknown[0]!r}; use {', '.join(ALL)}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import tuner

    work = args.keep or Path(tempfile.mkdtemp(prefix="tuner-bench-vision-"))
    work.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{work / 'bench.db'}"
    rows = []
    for name in names:
        spec = _spec(name, storage, work / "runs", args.n_trials)
        print(f"running {name} ({spec.n_trials} trials, concurrency {spec.concurrency}) ...", flush=True)
        start = time.perf_counter()
        tuner.run(spec, storage=storage, num_cpus=args.num_cpus, quiet=True)
        rows.append(_row(name, storage, time.perf_counter() - start))
        r = rows[-1]
        print(f"  {name}: best val {r['best_val']:.4f}, test {r['test']:.4f}, {r['wall_s']:.0f} s", flush=True)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [
        f"# Vision tasks benchmark, {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {_version('torch')}, optuna {_version('optuna')}, ray {_version('ray')}.",
        f"Command: `{' '.join(['python bench/tasks_vision.py', *(argv if argv is not None else sys.argv[1:])])}`.",
        "",
        "| study | trials (complete / pruned / failed) | best val accuracy | test accuracy of best trial | wall time |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['study']} | {r['complete'] + r['pruned'] + r['failed']} ({r['complete']} / {r['pruned']} / "
                     f"{r['failed']}) | {r['best_val']:.4f} (trial {r['best_trial']}) | {r['test']:.4f} | "
                     f"{r['wall_s']:.0f} s |")
    status = 0
    cnn = next((r for r in rows if r["study"] == "digits_cnn"), None)
    if cnn is not None:
        ok = cnn["test"] is not None and cnn["test"] >= DIGITS_CNN_TARGET
        lines += ["", f"digits_cnn target: test accuracy >= {DIGITS_CNN_TARGET}: {'PASS' if ok else 'FAIL'} "
                  f"({cnn['test']:.4f})"]
        status = 0 if ok else 1
    ft = {r["study"]: r for r in rows}
    if "resnet_finetune" in ft and "resnet_finetune_scratch" in ft:
        gain = ft["resnet_finetune"]["test"] - ft["resnet_finetune_scratch"]["test"]
        lines.append(f"fine-tuning vs scratch on the same 45 training images: {gain:+.4f} test accuracy")
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"tasks_vision-{stamp}.md").write_text(report)
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return status


def _version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
