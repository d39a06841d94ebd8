"""Where the rationales matter, over the table's runs: ``lrsa`` - ``text`` broken down by what the rationale holds.

For each dataset, every seed k of the all-layer table (``lrsa reproduce --profile full``) that has both a span
``text`` run and a span ``lrsa`` run (``--variant``, default ``lrsa-arkmsa``) whose records entered the table
(``results/<dataset>/runs/span/<variant>/seed<k>.json`` of the snapshot commit) is read from its run
directory's ``predictions_test.jsonl`` (the dev-selected checkpoint's test predictions). Gold test aspects are
grouped by what the post's rationale (the lrsa run's bundle) holds:

- ``L_i names the aspect``: the aspect's words occur in the image rationale (case-insensitive);
- ``post has an image description``: L_i is non-empty;
- ``L_t states the gold sentiment``: the sentiment L_t states ("... sounds positive", "Sentiment: X") is the
  aspect's gold polarity, another one, or none is stated (the gold label only groups the analysis; no model
  or prompt sees it);
- ``L_t agrees with the text model``: L_t's stated sentiment equals the polarity that the same seed's ``text``
  model gave this aspect (aspects the text model found, span exact).

Per group and seed: recall of the gold aspects (span and polarity exact) by lrsa and by text and their
difference; then over seeds: mean, standard deviation, the per-seed differences and the 95 % t-interval over
the seed-paired differences (``lrsa.training.stats.seed_t_interval``; none below two seeds). Precision has no
per-aspect grouping (a false positive belongs to no gold aspect), so groups report recall; the ``all``
row also gives JMASA F1.

The aspect host (MASC, ``--masc-variant``, default ``lrsa-arkmsa-aspect``) gets its own breakdown: accuracy on
the given gold aspects, grouped by the sentiment that each aspect's reason (MiniGPT-4, written toward that
aspect) states — the gold one, another one, or none (the parser of the reports' ``reason_stated`` baseline)
— and by whether it agrees with the same seed's ``text`` model.

Writes the breakdowns into ``results/<dataset>/attribution.json`` (keys ``table_breakdown`` and
``table_breakdown_masc``) and re-renders
``attribution.md`` (benchmarks/attribution_faithfulness.py's markdown). Cheap: reads files only.

    .venv/bin/python benchmarks/rationale_breakdown.py [--dataset twitter2015 ...] [--runs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from statistics import mean, stdev

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def default_runs() -> Path:
    from lrsa.training.reproduce import PROFILES

    snap = PROFILES["full"].snapshot
    return REPO.parent / f"lrsa-table-{snap[:12]}" / "runs" / "reproduce" / "full"


def read_predictions(path: Path) -> dict[str, set[tuple[int, int, str]]]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
            out[rec["id"]] = {(a["start"], a["end"], a["polarity"]) for a in rec["aspects"]}
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SystemExit(f"{path}: line {n}: malformed prediction record ({err})") from None
    return out


def groups_of(ex, aspect, rat, text_pred: set[tuple[int, int, str]]) -> list[str]:
    from attribution_faithfulness import stated

    surface = " ".join(ex.words[aspect.start:aspect.end]).lower()
    image = (rat.image if rat else "") or ""
    has = bool(image.strip())
    said = stated(rat.text) if rat else None
    keys = ["all gold aspects",
            f"post has an image description: {'yes' if has else 'no'}",
            f"L_i names the aspect: {'yes' if has and surface and surface in image.lower() else 'no'}",
            "L_t states the gold sentiment: " + ("none stated" if said is None else
                                                 "yes" if said == aspect.polarity else "no")]
    found = [p for s, e, p in text_pred if (s, e) == (aspect.start, aspect.end)]
    if said is not None and found:
        keys.append(f"L_t agrees with the text model's polarity: {'yes' if said == found[0] else 'no'}")
    return keys


def f1(pred: dict[str, set], examples) -> float:
    tp = sum(len(pred.get(ex.id, set()) & {(a.start, a.end, a.polarity) for a in ex.aspects}) for ex in examples)
    n_pred = sum(len(pred.get(ex.id, set())) for ex in examples)
    n_gold = sum(len(ex.aspects) for ex in examples)
    p, r = tp / max(1, n_pred), tp / max(1, n_gold)
    return 100 * 2 * p * r / max(1e-9, p + r)


def aggregate(per_seed: dict[str, dict[str, list[tuple[bool, bool]]]], seeds: list[str]) -> dict:
    """Per group: the share of its gold aspects each model gets right (lrsa, text) per seed, then over seeds the
    means, the mean seed-paired difference, its std, the per-seed differences and the t-interval over seeds."""
    from lrsa.training.stats import seed_t_interval

    keys = sorted({key for g in per_seed.values() for key in g}, key=lambda s: (s != "all gold aspects", s))
    out = {}
    for key in keys:
        rl, rt, diffs, ns = [], [], [], []
        for k in seeds:
            hits = per_seed[k].get(key, [])
            if not hits:
                continue
            ns.append(len(hits))
            rl.append(100 * mean(h[0] for h in hits))
            rt.append(100 * mean(h[1] for h in hits))
            diffs.append(rl[-1] - rt[-1])
        if not ns:
            continue
        out[key] = {"n": ns[0] if len(set(ns)) == 1 else f"{min(ns)}-{max(ns)}", "seeds": len(diffs),
                    "recall_lrsa": round(mean(rl), 2), "recall_text": round(mean(rt), 2),
                    "diff": round(mean(diffs), 2), "diff_std": round(stdev(diffs), 2) if len(diffs) > 1 else None,
                    "per_seed": [round(x, 2) for x in diffs], "seed_ci95": seed_t_interval(diffs)}
    return out


def paired_seeds(runs: Path, results: Path, dataset: str, host: str, variant: str) -> list[str]:
    """The seeds (``seed<k>``) with a ``variant`` run and a ``text`` run of ``host`` (``span``, ``masc/aspect``)
    that both entered the table (a record in ``results``) and whose test predictions are on disk."""
    from lrsa.training.records import record_path

    base = runs / dataset / host
    seeds = []
    for d in sorted((base / variant).glob("seed*")):
        k = d.name
        recs = [record_path(results, f"{dataset}/{host}/{v}/{k}") for v in (variant, "text")]
        preds = [d / "predictions_test.jsonl", base / "text" / k / "predictions_test.jsonl"]
        if all(p.exists() for p in recs + preds):
            seeds.append(k)
    return seeds


def hits_per_seed(base: Path, variant: str, seeds: list[str], examples, groups) -> tuple[dict, dict]:
    """Per seed, the test predictions of the ``variant`` and ``text`` runs under ``base``, and every gold aspect's
    (found by lrsa, found by text) under each group that ``groups(ex, aspect, text_pred)`` names."""
    per_seed: dict[str, dict[str, list[tuple[bool, bool]]]] = {}
    preds = {}
    for k in seeds:
        lrsa = read_predictions(base / variant / k / "predictions_test.jsonl")
        text = read_predictions(base / "text" / k / "predictions_test.jsonl")
        preds[k] = (lrsa, text)
        g: dict[str, list[tuple[bool, bool]]] = {}
        for ex in examples:
            for a in ex.aspects:
                gold = (a.start, a.end, a.polarity)
                hit = (gold in lrsa.get(ex.id, set()), gold in text.get(ex.id, set()))
                for key in groups(ex, a, text.get(ex.id, set())):
                    g.setdefault(key, []).append(hit)
        per_seed[k] = g
    return per_seed, preds


def overall(scores: dict[str, tuple[float, float]]) -> dict:
    """Per seed (lrsa, text) scores -> their means, the mean seed-paired difference and its t-interval."""
    from lrsa.training.stats import seed_t_interval

    diffs = [lr - tx for lr, tx in scores.values()]
    return {"lrsa": round(mean(v[0] for v in scores.values()), 2),
            "text": round(mean(v[1] for v in scores.values()), 2), "diff": round(mean(diffs), 2),
            "per_seed": [round(x, 2) for x in diffs], "seed_ci95": seed_t_interval(diffs)}


def breakdown(dataset: str, runs: Path, variant: str, results: Path) -> dict:
    from lrsa.data import load_dataset
    from lrsa.rationales.bundle import load_bundle

    examples = load_dataset(dataset, "test")
    base = runs / dataset / "span"
    seeds = paired_seeds(runs, results, dataset, "span", variant)
    if not seeds:
        return {"variant": variant, "seeds": [], "groups": {}, "note": f"no seed with both runs under {base}"}
    source = json.loads((base / variant / seeds[0] / "config.json").read_text())["train"]["rationale_source"]
    rats = load_bundle(dataset, source, level="tweet")
    per_seed, preds = hits_per_seed(base, variant, seeds, examples,
                                    lambda ex, a, text_pred: groups_of(ex, a, rats.get(ex.id), text_pred))
    f1s = {k: (f1(lrsa, examples), f1(text, examples)) for k, (lrsa, text) in preds.items()}
    return {"variant": variant, "rationale_source": source, "seeds": seeds,
            "runs": os.path.relpath(base.resolve(), REPO), "jmasa_f1": overall(f1s),
            "groups": aggregate(per_seed, seeds)}


def masc_groups_of(ex, aspect, reason: str, text_pred: set[tuple[int, int, str]]) -> list[str]:
    """A gold aspect's groups on the aspect host: what its reason states, and whether the text model agrees."""
    from lrsa.rationales.published import stated_sentiment

    said = stated_sentiment(reason)
    keys = ["all gold aspects", "the reason states the gold sentiment: "
            + ("none stated" if said is None else "yes" if said == aspect.polarity else "no")]
    by_text = [p for s, e, p in text_pred if (s, e) == (aspect.start, aspect.end)]
    if said is not None and by_text:
        keys.append(f"the reason agrees with the text model's polarity: {'yes' if said == by_text[0] else 'no'}")
    return keys


def masc_breakdown(dataset: str, runs: Path, variant: str, results: Path) -> dict:
    """The aspect host (MASC: the gold aspects are given, the model gives their polarity): ``lrsa`` - ``text``
    accuracy grouped by the sentiment that the aspect's own reason (``arkmsa-aspect``, written by MiniGPT-4
    toward that aspect; what the MASC ``lrsa`` row reads as L_t) states in its opening "Sentiment: X" — the
    gold one, another one, or none — and by whether that stated sentiment agrees with the same seed's ``text``
    model. The gold label only groups the aspects."""
    from lrsa.data import load_dataset
    from lrsa.rationales.bundle import load_bundle
    from lrsa.rationales.published import aspect_key

    examples = load_dataset(dataset, "test")
    base = runs / dataset / "masc" / "aspect"
    seeds = paired_seeds(runs, results, dataset, "masc/aspect", variant)
    if not seeds:
        return {"variant": variant, "seeds": [], "groups": {}, "note": f"no seed with both runs under {base}"}
    source = json.loads((base / variant / seeds[0] / "config.json").read_text())["train"]["rationale_source"]
    reasons = load_bundle(dataset, source, level="aspect")
    per_seed, _ = hits_per_seed(base, variant, seeds, examples, lambda ex, a, text_pred: masc_groups_of(
        ex, a, reasons[aspect_key(ex.id, a.start, a.end)].text, text_pred))
    accs = {k: tuple(100 * mean(h[i] for h in g["all gold aspects"]) for i in (0, 1)) for k, g in per_seed.items()}
    return {"variant": variant, "rationale_source": source, "seeds": seeds, "metric": "accuracy",
            "runs": os.path.relpath(base.resolve(), REPO), "masc_acc": overall(accs),
            "groups": aggregate(per_seed, seeds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", default=None, help="default: twitter2015 and twitter2017")
    ap.add_argument("--runs", type=Path, default=None, help="the table's run directory (default: its worktree's)")
    ap.add_argument("--variant", default="lrsa-arkmsa")
    ap.add_argument("--masc-variant", default="lrsa-arkmsa-aspect")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    args = ap.parse_args()
    from attribution_faithfulness import markdown

    runs = args.runs or default_runs()
    for ds in args.dataset or ["twitter2015", "twitter2017"]:
        b = breakdown(ds, runs, args.variant, args.results)
        path = args.results / ds / "attribution.json"
        doc = json.loads(path.read_text()) if path.exists() else {}
        doc["table_breakdown"] = b
        doc["table_breakdown_masc"] = masc_breakdown(ds, runs, args.masc_variant, args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        if "deletion" in doc:
            path.with_suffix(".md").write_text(markdown(doc))
        print(f"{ds}: seeds {b['seeds']}; wrote {path}")
        for name, part in (("span", b), ("MASC", doc["table_breakdown_masc"])):
            for key, g in part["groups"].items():
                print(f"  {name} {key}: n {g['n']}, lrsa - text {g['diff']:+.2f} over {g['seeds']} seed(s)")


if __name__ == "__main__":
    main()
