"""Where the rationales matter, over the table's runs: ``lrsa`` - ``text`` broken down by what the rationale holds.

For each dataset, every seed k of the all-layer table (``lrsa reproduce --profile full``) that has both a span
``text`` record and a span ``lrsa`` record (``--variant``, default ``lrsa-arkmsa``) in the table
(``results/<dataset>/runs/span/<variant>/seed<k>.json`` of the snapshot commit) is read from its archived test
predictions (the dev-selected checkpoint's, ``seed<k>.predictions_test.jsonl.gz`` beside the record). The
script first archives them from the table's run directories (``--runs``, default the snapshot worktree's),
for every record of the table whose run directory still holds them: a run directory lives on the machine that
trained it, the archive is committed with the record. Seeds of the committed breakdown whose predictions were
never archived (seeds 0-2 of the first rows: their machine was gone before archiving existed) are carried:
their per-seed differences and recall means are kept from the committed file (``carried``) and the new seeds
are added to them. Gold test aspects are grouped by what the post's rationale (the lrsa run's bundle) holds:

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

(``bash scripts/table.sh --report`` runs it after rebuilding the reports.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean, stdev

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def default_runs() -> Path:
    from lrsa.training.reproduce import PROFILES

    snap = PROFILES["full"].snapshot
    return REPO.parent / f"lrsa-table-{snap[:12]}" / "runs" / "reproduce" / "full"


def archive_all(runs: Path, results: Path, log=print) -> int:
    """Archive, beside its record, the test predictions of every run of the full profile whose record is in
    ``results`` and whose run directory (under ``runs``) still holds them (``lrsa.training.records.
    archive_predictions``: checked against the record's per-item counts; written once). Returns how many."""
    from lrsa.data import load_dataset
    from lrsa.training.records import archive_predictions
    from lrsa.training.reproduce import PROFILES
    from lrsa.training.tables.plan import plan

    gold: dict[str, list] = {}
    written = 0
    for spec in plan(PROFILES["full"]):
        run_dir = runs / spec.key
        if not (run_dir / "predictions_test.jsonl").is_file():
            continue
        if spec.dataset not in gold:
            gold[spec.dataset] = load_dataset(spec.dataset, "test")
        if archive_predictions(results, spec.key, run_dir, gold[spec.dataset]):
            written += 1
            log(f"archived the test predictions of {spec.key}")
    return written


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


def _seed_order(seed: str) -> int:
    return int(seed.removeprefix("seed"))


def _n_range(values: list) -> int | str:
    """One group size, or ``"lo-hi"`` where it differs between seeds (groups defined by a model's answer)."""
    nums = [int(x) for v in values for x in str(v).split("-")]
    return nums[0] if len(set(nums)) == 1 else f"{min(nums)}-{max(nums)}"


def carried(old: dict | None, archived: list[str], what: str) -> dict | None:
    """The seeds of the committed breakdown ``old`` whose test predictions are not archived (their run
    directories were lost with the machine that trained them, before predictions were archived): their
    per-seed differences and recall means, kept so that a rerun adds new seeds to them instead of dropping
    them. ``what`` names the breakdown in errors. None when every seed of ``old`` is archived."""
    if not old or not old.get("seeds"):
        return None
    lost = [k for k in old["seeds"] if k not in archived]
    if not lost:
        return None
    prev = old.get("carried")
    if prev:
        if lost != prev["seeds"]:
            raise SystemExit(f"{what}: seeds {lost} have no archived predictions, but the committed breakdown "
                             f"carries {prev['seeds']}: a carried seed's means cannot be split; rerun from the "
                             "run directories")
        return prev
    if lost != old["seeds"]:
        raise SystemExit(f"{what}: seeds {lost} of the committed breakdown have no archived predictions while "
                         f"others of it do; its per-seed recalls were not kept, so they cannot be carried")
    metric = "jmasa_f1" if "jmasa_f1" in old else "masc_acc"
    short = [key for key, g in old["groups"].items() if len(g["per_seed"]) != len(lost)]
    if short or len(old[metric]["per_seed"]) != len(lost):
        raise SystemExit(f"{what}: groups {short or [metric]} of the committed breakdown lack a seed's difference")
    return {"seeds": lost, "runs": old.get("runs"),
            "note": "test predictions not archived (run directories lost with their machine); per-seed "
                    "differences and recall means kept from the committed breakdown",
            "overall": {k: old[metric][k] for k in ("lrsa", "text", "per_seed")},
            "groups": {key: {k: g[k] for k in ("n", "recall_lrsa", "recall_text", "per_seed")}
                       for key, g in old["groups"].items()}}


def _combine(lrsa: list[float], text: list[float], diffs: dict[str, float],
             kept: tuple[list[str], float, float, list[float]] | None) -> dict:
    """Means over the archived seeds' per-seed values and the carried seeds' means (weighted by seeds), the
    per-seed differences in seed order and their t-interval. ``kept``: the carried seeds, their lrsa and text
    means and their per-seed differences (None: nothing carried)."""
    from lrsa.training.stats import seed_t_interval

    kept_seeds, kept_l, kept_t, kept_diffs = kept or ([], 0.0, 0.0, [])
    diffs = {**dict(zip(kept_seeds, kept_diffs)), **diffs}
    order = sorted(diffs, key=_seed_order)
    ds = [diffs[k] for k in order]
    n = len(kept_seeds) + len(lrsa)
    mean_l = (kept_l * len(kept_seeds) + sum(lrsa)) / n
    mean_t = (kept_t * len(kept_seeds) + sum(text)) / n
    return {"lrsa": round(mean_l, 2), "text": round(mean_t, 2), "diff": round(mean(ds), 2),
            "diff_std": round(stdev(ds), 2) if len(ds) > 1 else None, "seeds": order,
            "per_seed": [round(x, 2) for x in ds], "seed_ci95": seed_t_interval(ds)}


def aggregate(per_seed: dict[str, dict[str, list[tuple[bool, bool]]]], seeds: list[str],
              carry: dict | None = None) -> dict:
    """Per group: the share of its gold aspects each model gets right (lrsa, text) per seed, then over seeds
    (the archived ``seeds`` and the ``carry``-ed ones) the means, the mean seed-paired difference, its std,
    the per-seed differences (seed order) and the t-interval over seeds."""
    kept_groups = carry["groups"] if carry else {}
    keys = sorted({key for g in per_seed.values() for key in g} | set(kept_groups),
                  key=lambda s: (s != "all gold aspects", s))
    out = {}
    for key in keys:
        rl, rt, diffs, ns = [], [], {}, []
        for k in seeds:
            hits = per_seed[k].get(key, [])
            if not hits:
                continue
            ns.append(len(hits))
            rl.append(100 * mean(h[0] for h in hits))
            rt.append(100 * mean(h[1] for h in hits))
            diffs[k] = rl[-1] - rt[-1]
        kept = kept_groups.get(key)
        if kept:
            ns.append(kept["n"])
        if not ns:
            continue
        c = _combine(rl, rt, diffs, (carry["seeds"], kept["recall_lrsa"], kept["recall_text"], kept["per_seed"])
                     if kept else None)
        out[key] = {"n": _n_range(ns), "seeds": len(c["seeds"]), "recall_lrsa": c["lrsa"], "recall_text": c["text"],
                    "diff": c["diff"], "diff_std": c["diff_std"], "per_seed": c["per_seed"],
                    "seed_ci95": c["seed_ci95"]}
    return out


def paired_seeds(results: Path, dataset: str, host: str, variant: str) -> list[str]:
    """The seeds (``seed<k>``) with a ``variant`` record and a ``text`` record of ``host`` (``span``,
    ``masc/aspect``) in the table, both with their test predictions archived beside them."""
    from lrsa.training.records import predictions_path, record_path

    seeds = []
    for rec in sorted((results / dataset / "runs" / host / variant).glob("seed*.json"),
                      key=lambda p: _seed_order(p.stem)):
        k = rec.stem
        keys = [f"{dataset}/{host}/{v}/{k}" for v in (variant, "text")]
        if all(record_path(results, key).is_file() and predictions_path(results, key).is_file() for key in keys):
            seeds.append(k)
    return seeds


def hits_per_seed(results: Path, prefix: str, variant: str, seeds: list[str], examples, groups) -> tuple[dict, dict]:
    """Per seed, the archived test predictions of the ``variant`` and ``text`` records under ``prefix``
    (``<dataset>/<host>``), and every gold aspect's (found by lrsa, found by text) under each group that
    ``groups(ex, aspect, text_pred)`` names."""
    from lrsa.training.metrics import read_predictions
    from lrsa.training.records import predictions_path

    def read(key: str) -> dict[str, set[tuple[int, int, str]]]:
        pred = read_predictions(predictions_path(results, key), examples)
        return {i: {(a.start, a.end, a.polarity) for a in aspects} for i, aspects in pred.items()}

    per_seed: dict[str, dict[str, list[tuple[bool, bool]]]] = {}
    preds = {}
    for k in seeds:
        lrsa, text = read(f"{prefix}/{variant}/{k}"), read(f"{prefix}/text/{k}")
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


def overall(scores: dict[str, tuple[float, float]], carry: dict | None = None) -> dict:
    """Per seed (lrsa, text) scores, with the carried seeds' -> their means, the mean seed-paired difference
    and its t-interval."""
    kept = carry and carry["overall"]
    c = _combine([v[0] for v in scores.values()], [v[1] for v in scores.values()],
                 {k: lr - tx for k, (lr, tx) in scores.items()},
                 (carry["seeds"], kept["lrsa"], kept["text"], kept["per_seed"]) if kept else None)
    return {k: c[k] for k in ("lrsa", "text", "diff", "per_seed", "seed_ci95")}


def _bundle(dataset: str, source: str, level: str) -> dict:
    """The rationale bundle the runs read, built from the data directory where this checkout lacks it (the
    published sources are derived from the pinned data files, as the table's workers build them)."""
    from lrsa.rationales.bundle import bundle_path, load_bundle
    from lrsa.rationales.published import SOURCES, import_published

    if not bundle_path(dataset, source).is_file() and source in SOURCES:
        path, cov = import_published(dataset, source)
        print(f"built rationale bundle {path} from the data directory ({cov})")
    return load_bundle(dataset, source, level=level)


def _source(results: Path, key: str) -> str:
    from lrsa.training.records import read_record

    return read_record(results, key)["result"]["config"]["train"]["rationale_source"]


def _inputs(dataset: str, host: str, variant: str, results: Path, old: dict | None, level: str):
    """What both breakdowns start from: the test examples, the seeds with archived predictions, the carried
    seeds of ``old``, the rationale source and its bundle at ``level`` (empty without archived seeds); None
    where there is neither an archived nor a carried seed."""
    from lrsa.data import load_dataset

    examples = load_dataset(dataset, "test")
    seeds = paired_seeds(results, dataset, host, variant)
    carry = carried(old, seeds, f"{dataset} {host} breakdown")
    if not seeds and not carry:
        return None
    source = _source(results, f"{dataset}/{host}/{variant}/{seeds[0]}") if seeds else old["rationale_source"]
    return examples, seeds, carry, source, _bundle(dataset, source, level) if seeds else {}


def _none_yet(variant: str, results: Path) -> dict:
    return {"variant": variant, "seeds": [], "groups": {},
            "note": f"no seed with both records and their archived test predictions under {results}"}


def _finish(out: dict, seeds: list[str], carry: dict | None) -> dict:
    out["seeds"] = sorted(seeds + (carry["seeds"] if carry else []), key=_seed_order)
    out["archived_seeds"] = seeds
    if carry:
        out["carried"] = carry
    return out


def breakdown(dataset: str, variant: str, results: Path, old: dict | None = None) -> dict:
    """The span host's breakdown from the archived predictions, with ``old``'s unarchived seeds carried."""
    inputs = _inputs(dataset, "span", variant, results, old, "tweet")
    if inputs is None:
        return _none_yet(variant, results)
    examples, seeds, carry, source, rats = inputs
    per_seed, preds = hits_per_seed(results, f"{dataset}/span", variant, seeds, examples,
                                    lambda ex, a, text_pred: groups_of(ex, a, rats.get(ex.id), text_pred))
    f1s = {k: (f1(lrsa, examples), f1(text, examples)) for k, (lrsa, text) in preds.items()}
    return _finish({"variant": variant, "rationale_source": source,
                    "predictions": f"results/{dataset}/runs/span/<row>/seed<k>.predictions_test.jsonl.gz",
                    "jmasa_f1": overall(f1s, carry), "groups": aggregate(per_seed, seeds, carry)}, seeds, carry)


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


def masc_breakdown(dataset: str, variant: str, results: Path, old: dict | None = None) -> dict:
    """The aspect host (MASC: the gold aspects are given, the model gives their polarity): ``lrsa`` - ``text``
    accuracy grouped by the sentiment that the aspect's own reason (``arkmsa-aspect``, written by MiniGPT-4
    toward that aspect; what the MASC ``lrsa`` row reads as L_t) states in its opening "Sentiment: X" — the
    gold one, another one, or none — and by whether that stated sentiment agrees with the same seed's ``text``
    model. The gold label only groups the aspects."""
    from lrsa.rationales.published import aspect_key

    inputs = _inputs(dataset, "masc/aspect", variant, results, old, "aspect")
    if inputs is None:
        return _none_yet(variant, results)
    examples, seeds, carry, source, reasons = inputs
    per_seed, _ = hits_per_seed(results, f"{dataset}/masc/aspect", variant, seeds, examples,
                                lambda ex, a, text_pred: masc_groups_of(
                                    ex, a, reasons[aspect_key(ex.id, a.start, a.end)].text, text_pred))
    accs = {k: tuple(100 * mean(h[i] for h in g["all gold aspects"]) for i in (0, 1)) for k, g in per_seed.items()}
    return _finish({"variant": variant, "rationale_source": source, "metric": "accuracy",
                    "predictions": f"results/{dataset}/runs/masc/aspect/<row>/seed<k>.predictions_test.jsonl.gz",
                    "masc_acc": overall(accs, carry), "groups": aggregate(per_seed, seeds, carry)}, seeds, carry)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", default=None, help="default: twitter2015 and twitter2017")
    ap.add_argument("--runs", type=Path, default=None,
                    help="the table's run directory, whose test predictions are archived first "
                         "(default: its worktree's; skipped where it does not exist)")
    ap.add_argument("--variant", default="lrsa-arkmsa")
    ap.add_argument("--masc-variant", default="lrsa-arkmsa-aspect")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    args = ap.parse_args()
    from attribution_faithfulness import markdown

    runs = args.runs or default_runs()
    if runs.is_dir():
        print(f"archived {archive_all(runs, args.results)} new test prediction file(s) from {runs}")
    for ds in args.dataset or ["twitter2015", "twitter2017"]:
        path = args.results / ds / "attribution.json"
        doc = json.loads(path.read_text()) if path.exists() else {}
        b = breakdown(ds, args.variant, args.results, doc.get("table_breakdown"))
        m = masc_breakdown(ds, args.masc_variant, args.results, doc.get("table_breakdown_masc"))
        doc["table_breakdown"], doc["table_breakdown_masc"] = b, m
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        if "deletion" in doc:
            path.with_suffix(".md").write_text(markdown(doc))
        print(f"{ds}: seeds {b['seeds']} (archived {b.get('archived_seeds', [])}); wrote {path}")
        for name, part in (("span", b), ("MASC", m)):
            for key, g in part["groups"].items():
                print(f"  {name} {key}: n {g['n']}, lrsa - text {g['diff']:+.2f} over {g['seeds']} seed(s)")


if __name__ == "__main__":
    main()
