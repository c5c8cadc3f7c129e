"""Search-space advice: what to change in the space before the next study, with the evidence.

Three checks on the complete trials, each judged against the best ``top_fraction`` of them (at
least ``min_top``, at most ``max_top``; per objective when there are several):

- **widen**: a numeric parameter whose best trial sits within ``bound_margin`` of one end of
  its range (on the log scale for log parameters) while at least ``bound_share`` of the top
  trials crowd that end, more than chance explains (binomial p < ``bound_p`` against the share
  of all trials there) or with the sampler already piling 40% of all trials there: the optimum
  may lie outside the range.
- **drop a choice**: a categorical choice never among the top trials although it was tried at
  least ``min_tries`` times and chance alone would have put ``min_expected`` of them there.
- **fix**: a parameter whose importance is below ``negligible`` for every objective (and that
  got neither advice above): tuning it costs trials and buys nothing.

Nothing is said from fewer than ``min_complete`` complete trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from tuner.report._common import StudyData, complete_trials, fmt_value, ranked
from tuner.report._importance import ImportanceInfo

__all__ = ["Advice", "AdviceInfo", "_get_advice_info"]


@dataclass
class Advice:
    kind: str                   # "widen", "drop-choice" or "fix"
    param: str
    message: str                # one plain-text sentence with the evidence (escaped when rendered)
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdviceInfo:
    items: list[Advice]
    top_k: int
    n_complete: int
    notes: list[str] = field(default_factory=list)
    judged: bool = True  # False when too few trials completed to judge anything (``notes`` says so)


def _latest_distribution(trials: list[FrozenTrial], name: str) -> Any:
    for t in reversed(trials):
        if name in t.distributions:
            return t.distributions[name]
    return None


def _position(dist: FloatDistribution | IntDistribution, x: float) -> float | None:
    """Where x sits in [low, high] as a fraction (log scale for log distributions)."""
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        if low <= 0 or x <= 0:
            return None
        low, high, x = math.log(low), math.log(high), math.log(x)
    if high <= low:
        return None
    return (x - low) / (high - low)


def _n_values(dist: FloatDistribution | IntDistribution) -> float:
    step = getattr(dist, "step", None)
    if step:
        return math.floor((dist.high - dist.low) / step + 1e-9) + 1
    return math.inf


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, min(max(p, 0.0), 1.0)))


def _bounds_advice(name: str, dist: Any, top: list[FrozenTrial], complete: list[FrozenTrial], metric: str | None,
                   margin: float, share_needed: float, max_p: float) -> Advice | None:
    if not isinstance(dist, (FloatDistribution, IntDistribution)) or _n_values(dist) < 3:
        return None
    values = [t.params[name] for t in top if name in t.params]
    if len(values) < 3:
        return None
    positions = [_position(dist, float(v)) for v in values]
    if any(p is None for p in positions):
        return None
    for side, bound, near in (("low", dist.low, lambda p: p <= margin), ("high", dist.high, lambda p: p >= 1.0 - margin)):
        n_near = sum(1 for p in positions if near(p))
        share = n_near / len(values)
        if not near(positions[0]) or n_near < 3 or share < share_needed:
            continue
        everyone = [_position(dist, float(t.params[name])) for t in complete if name in t.params]
        share_all = sum(1 for p in everyone if p is not None and near(p)) / len(everyone)
        # The best trial sits at the bound and the top trials crowd it, more than chance explains (a binomial test
        # against the share of all trials there), or the sampler already piles trials there.
        p_value = _binom_sf(n_near, len(values), share_all)
        if p_value >= max_p and share_all < 0.4:
            continue
        scale = " on its log scale" if dist.log else ""
        shown = sorted(values, reverse=(side == "high"))[:5]
        where = "lower bound" if side == "low" else "upper bound"
        verb = f"lower the low end below {fmt_value(bound)}" if side == "low" else f"raise the high end above {fmt_value(bound)}"
        for_metric = f" for {metric}" if metric else ""
        message = (f"the best trial{for_metric} and {n_near} of the best {len(values)} ({share:.0%}, against {share_all:.0%} "
                   f"of all trials; binomial p={p_value:.1g}) have {name} within {margin:.0%} of the range{scale} from the {where} {fmt_value(bound)} "
                   f"(closest values: {', '.join(fmt_value(v) for v in shown)}); the best value may lie outside "
                   f"[{fmt_value(dist.low)}, {fmt_value(dist.high)}]: widen it ({verb}), unless {fmt_value(bound)} is a hard limit.")
        return Advice("widen", name, message, {"side": side, "bound": bound, "low": dist.low, "high": dist.high,
                                               "n_near": n_near, "n_top": len(values), "share": share,
                                               "share_all": share_all, "p_value": p_value, "top_values": values, "metric": metric})
    return None


def _choice_advice(name: str, dist: Any, complete: list[FrozenTrial], top: list[FrozenTrial], metric: str | None,
                   min_tries: int, min_expected: float, rank_of: dict[int, int]) -> list[Advice]:
    if not isinstance(dist, CategoricalDistribution) or len(dist.choices) < 2:
        return []
    having = [t for t in complete if name in t.params]
    top_having = [t for t in top if name in t.params]
    if not having or not top_having:
        return []
    tried: dict[Any, int] = {}
    for t in having:
        tried[t.params[name]] = tried.get(t.params[name], 0) + 1
    won: dict[Any, int] = {}
    for t in top_having:
        won[t.params[name]] = won.get(t.params[name], 0) + 1
    out = []
    for choice, n in tried.items():
        if won.get(choice, 0) > 0 or n < min_tries:
            continue
        expected = len(top_having) * n / len(having)
        if expected < min_expected:
            continue
        best_rank = min(rank_of[t.number] for t in having if t.params[name] == choice)
        winners = ", ".join(f"{fmt_value(c)} {k}x" for c, k in sorted(won.items(), key=lambda kv: -kv[1]))
        for_metric = f" for {metric}" if metric else ""
        message = (f"{name}={fmt_value(choice)} is never among the best {len(top_having)} trials{for_metric} although it was "
                   f"tried {n} times of {len(having)} (chance alone would put {expected:.1f} there; its best trial ranks "
                   f"{_ordinal(best_rank)}; the best trials chose {winners}): drop it from the choices.")
        out.append(Advice("drop-choice", name, message, {"choice": choice, "tried": n, "of": len(having),
                                                          "top": len(top_having), "expected": expected,
                                                          "best_rank": best_rank, "top_counts": won, "metric": metric}))
    return out


def _get_advice_info(data: StudyData, importance: ImportanceInfo | None = None, *, top_fraction: float = 0.1,
                     min_top: int = 5, max_top: int = 1_000, min_complete: int = 20, bound_margin: float = 0.05,
                     bound_share: float = 0.3, bound_p: float = 1e-3, min_tries: int = 5, min_expected: float = 3.0,
                     negligible: float = 0.01) -> AdviceInfo:
    complete = complete_trials(data.trials)
    k = min(max_top, max(min_top, math.ceil(top_fraction * len(complete))))
    info = AdviceInfo(items=[], top_k=k, n_complete=len(complete))
    if len(complete) < min_complete:
        info.notes.append(f"{len(complete)} complete trial(s): advice needs at least {min_complete}.")
        info.judged = False
        return info
    names = sorted({n for t in complete for n in t.params})
    seen: set[tuple[str, str, str]] = set()
    for i, metric in enumerate(data.metric_names):
        order = ranked(complete, data.directions, objective=i)
        top = order[:k]
        rank_of = {t.number: r for r, t in enumerate(order, start=1)}
        label = metric if data.multi_objective else None
        for name in names:
            dist = _latest_distribution(complete, name)
            found = [_bounds_advice(name, dist, top, complete, label, bound_margin, bound_share, bound_p)]
            found += _choice_advice(name, dist, complete, top, label, min_tries, min_expected, rank_of)
            for item in found:
                if item is None:
                    continue
                key = (item.kind, name, str(item.evidence.get("side", item.evidence.get("choice"))))
                if key not in seen:
                    seen.add(key)
                    info.items.append(item)
    if importance is not None and len(importance.ranking()) >= 2:
        ranking = importance.ranking()
        best = ranked(complete, data.directions)[0]
        already = {i.param for i in info.items}
        for name in ranking:
            top_imp = max(imp.get(name, 0.0) for imp in importance.importances)
            if top_imp >= negligible or name in already:  # a parameter that crowds a bound or loses a choice matters
                continue
            of = "every objective" if len(importance.objectives) > 1 else importance.objectives[0]
            value = f" (e.g. at the best trial's value {fmt_value(best.params[name])})" if name in best.params else ""
            sample = (f"a sample of {importance.n_used:,} of {importance.n_complete:,} complete trials" if importance.sampled
                      else f"{importance.n_used:,} complete trials")
            message = (f"{name} has importance {top_imp:.4f} for {of} ({importance.evaluator} on {sample}; "
                       f"{_ordinal(ranking.index(name) + 1)} of {len(ranking)} parameters, below {negligible:g}): "
                       f"fix it{value} and spend the trials on the others.")
            info.items.append(Advice("fix", name, message, {"importance": top_imp, "threshold": negligible,
                                                            "evaluator": importance.evaluator, "n_used": importance.n_used,
                                                            "rank": ranking.index(name) + 1, "of": len(ranking)}))
    return info
