"""Faithfulness of the per-aspect attribution (lrsa.model.attribution): a deletion test on a benchmark split.

For every aspect the checkpoint predicts on the split (its own decoded spans, not gold), both methods rank
the inputs the model can see for that aspect (``text``, ``V``, ``L_t``, ``L_i``; an input it cannot see is
left out of the ranking): ``readout`` by its shares, ``intervention`` by the drop in the aspect's probability
of its predicted polarity when the input is removed. Then the input at each rank, the last-ranked one and a
random one (seeded) are removed, one at a time, and the decision is re-scored: mean change in probability
(before - after; positive = the removal hurt the prediction), polarity flip rate, span flip rate (the span
no longer decoded) and the rate of either. A faithful ranking changes the decision more at rank 1 than at
the last rank or at random. Single removals are what the intervention method itself measures, so its rank 1
is by construction the largest single-removal effect: its rows are the ceiling a ranking can reach; the
read-out rows say how close a read from one forward pass comes to it. Two further tests are not circular
for either method: removing the two inputs a method ranks first *together* vs the two it ranks last
(interactions: the model can make up for one missing input with another), and the same on the side inputs
only (V, L_t, L_i: the tweet words, ranked first almost always, left in).

Agreement between the methods: top-1 agreement and Kendall's tau between the two rankings (aspects with at
least two visible inputs; and on the side inputs only). Breakdown: the mean change and flip rate of removing
L_i / L_t by what the rationale holds (L_i names the aspect or not; the post has an image description or not).

Writes results/<dataset>/attribution.json and .md (config, checkpoint, data checksums through the run
record, commit, machine).

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/attribution_faithfulness.py \\
        [--checkpoint runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0] [--split test] [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "runs" / "reproduce" / "main" / "twitter2015" / "span" / "lrsa-arkmsa" / "seed0"


def kendall(a: list[str], b: list[str]) -> float:
    """Kendall's tau between two rankings of the same items (no ties)."""
    pos = {x: i for i, x in enumerate(b)}
    pairs = list(itertools.combinations(range(len(a)), 2))
    if not pairs:
        return float("nan")
    agree = sum(1 if pos[a[i]] < pos[a[j]] else -1 for i, j in pairs)
    return agree / len(pairs)


def stated(text: str) -> str | None:
    """The sentiment a rationale states ("... sounds positive ...", "Sentiment: negative"), or None."""
    m = re.search(r"(?:sounds|sentiment:?)\s+(?:\w+\s+)?(positive|negative|neutral)", text or "", re.I)
    return {"positive": "POS", "negative": "NEG", "neutral": "NEU"}[m.group(1).lower()] if m else None


def where_rationales_matter(examples: list, preds: dict[str, dict], rats: dict | None) -> dict:
    """Gold aspects found with their polarity by ``lrsa`` and by ``text`` (one seed each), grouped by what the
    post's rationale holds: recall of each and their difference, with counts."""
    from lrsa.rationales.published import MISSING

    groups: dict[str, list[tuple[bool, bool]]] = {}
    for ex in examples:
        rat = rats.get(ex.id) if rats else None
        found = {k: {(s, e, p) for s, e, p, _ in v.get(ex.id, [])} for k, v in preds.items()}
        for a in ex.aspects:
            hit = ((a.start, a.end, a.polarity) in found["lrsa"], (a.start, a.end, a.polarity) in found["text"])
            surface = " ".join(ex.words[a.start:a.end]).lower()
            image = rat.image if rat else ""
            has = bool(image.strip()) and image != MISSING
            keys = ["all gold aspects",
                    f"post has an image description: {'yes' if has else 'no'}",
                    f"L_i names the aspect: {'yes' if has and surface in image.lower() else 'no'}"]
            said = stated(rat.text) if rat else None
            if said is not None:
                keys.append(f"L_t's stated sentiment agrees with the gold one: {'yes' if said == a.polarity else 'no'}")
            for k in keys:
                groups.setdefault(k, []).append(hit)
    out = {}
    for k, hits in groups.items():
        r_l, r_t = mean(h[0] for h in hits), mean(h[1] for h in hits)
        out[k] = {"n": len(hits), "recall_lrsa": round(100 * r_l, 2), "recall_text": round(100 * r_t, 2),
                  "diff": round(100 * (r_l - r_t), 2), "only_lrsa": sum(h[0] and not h[1] for h in hits),
                  "only_text": sum(h[1] and not h[0] for h in hits)}
    return {"groups": dict(sorted(out.items(), key=lambda kv: (kv[0] != "all gold aspects", kv[0])))}


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    return {"n": len(rows), "mean_change": round(mean(r["change"] for r in rows), 4),
            "polarity_flip": round(mean(r["polarity_flip"] for r in rows), 4),
            "span_flip": round(mean(r["span_flip"] for r in rows), 4),
            "any_flip": round(mean(r["polarity_flip"] or r["span_flip"] for r in rows), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=MAIN)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-input baseline")
    ap.add_argument("--text-checkpoint", type=Path, default=MAIN.parent.parent / "text" / "seed0",
                    help="the same run's text-only model, for where the rationales matter (skipped if absent)")
    ap.add_argument("--out", type=Path, default=None, help="default: results/<dataset>/attribution.json")
    ap.add_argument("--render", type=Path, default=None,
                    help="rewrite the .md (and the favoured method) of an existing results JSON; nothing is run")
    args = ap.parse_args()
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["favoured_method"] = favoured(result["deletion"])
        args.render.write_text(json.dumps(result, indent=2) + "\n")
        args.render.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
        return

    import torch

    torch.set_num_threads(args.threads)
    from lrsa.config import RunConfig
    from lrsa.env import machine
    from lrsa.io import git_commit
    from lrsa.model import attribution as A
    from lrsa.model.inputs import collate
    from lrsa.model.lrsa import load_checkpoint, load_side_encoder
    from lrsa.training.data import load_rationales, load_split

    ckpt = args.checkpoint
    if (ckpt / "best" / "config.json").exists():
        ckpt = ckpt / "best"
    if not (ckpt / "config.json").exists():
        sys.exit(f"{ckpt}: no checkpoint (train it: lrsa reproduce --profile main)")
    net, tok, meta = load_checkpoint(ckpt)
    run = RunConfig.model_validate(meta["run"])
    net.set_precision(run.train.precision)
    dataset = run.train.dataset
    se = meta.get("side_encoder")
    enc = load_side_encoder(se, precision=run.train.precision)
    if run.model.side_encoder != "frozen":
        sys.exit("this benchmark reads checkpoints with a frozen side encoder")
    rats = load_rationales(run)
    t0 = time.perf_counter()
    sp = load_split(run, args.split, tok, enc, None, rats, args.limit)
    print(f"{dataset} {args.split}: {len(sp.examples)} sentences ready in {time.perf_counter() - t0:.1f}s",
          flush=True)
    rng = random.Random(args.seed)
    examples = {ex.id: ex for ex in sp.examples}
    records = []
    t0 = time.perf_counter()
    pad = tok.pad_token_id or 0
    for c in range(0, len(sp.items), args.batch):
        items = sp.items[c:c + args.batch]
        batch = collate(items, pad, sp.side)
        decoded = net.decode(batch)
        attrs = A.explain(net, batch, decoded, tok, None, top_k=0, loo=0)
        for b, (row, arow) in enumerate(zip(decoded, attrs)):
            if not row:
                continue
            vis = A.visible(net, batch, b)
            seen = [n for n in A.INPUTS if vis[n]]
            side_seen = [n for n in seen if n != "text"]
            # joint removals: top-2 / bottom-2 by each method, over all seen inputs and over side inputs
            joint_plan = []
            for a, (s, e, pol, _) in enumerate(row):
                at = arow[a]
                change = {n: at["intervention"][n]["change"] for n in A.INPUTS}
                for method, values in (("readout", at["readout"]), ("intervention", change)):
                    for scope, among in (("all", seen), ("side", side_seen)):
                        if len(among) >= 3:  # two first vs two last are different sets only with 3+ inputs
                            r = A.rank(values, among)
                            joint_plan.append((a, method, scope, "first2", tuple(r[:2])))
                            joint_plan.append((a, method, scope, "last2", tuple(r[-2:])))
            joint = {}
            if joint_plan:
                rows_ = [A.remove(net, batch, b, names, tok, row[a][:2]) for a, _, _, _, names in joint_plan]
                var = A.stack([A.take(batch, [b])] + rows_)
                spans = [[(s, e) for s, e, _, _ in row]] * len(var["ids"])
                probs, dec = A.score(net, var, spans)
                for i, (a, method, scope, which, names) in enumerate(joint_plan, start=1):
                    k = ("POS", "NEU", "NEG").index(row[a][2])
                    before, after = float(probs[0][a][k]), float(probs[i][a][k])
                    joint[(a, method, scope, which)] = {
                        "inputs": list(names), "change": before - after,
                        "polarity_flip": int(probs[i][a].argmax()) != k,
                        "span_flip": not any((s, e) == row[a][:2] for s, e, _, _ in dec[i])}
            ex = examples[batch["ids"][b].split("@", 1)[0]]
            rat = rats.get(ex.id) if rats else None
            for a, (s, e, pol, _) in enumerate(row):
                at = arow[a]
                surface = " ".join(ex.words[s:e]).lower()
                records.append({
                    "id": ex.id, "span": [s, e], "polarity": pol, "prob": at["prob"], "seen": seen,
                    "readout": at["readout"], "intervention": at["intervention"],
                    "random": A.random_input(seen, rng), "random_side": A.random_input(side_seen, rng) if side_seen
                    else None,
                    "joint": {"/".join(k[1:]): v for k, v in joint.items() if k[0] == a},
                    "li_names_aspect": bool(rat and surface and surface in rat.image.lower()),
                    "lt_agrees": stated(rat.text) == pol if rat and stated(rat.text) else None,
                    "has_image_description": bool(rat and rat.image.strip()),
                })
        done = min(c + args.batch, len(sp.items))
        if done % (args.batch * 8) == 0 or done == len(sp.items):
            print(f"  {done}/{len(sp.items)} sentences, {len(records)} aspects, "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ deletion test
    def effect(r: dict, name: str) -> dict:
        return r["intervention"][name]

    deletion: dict[str, dict] = {}
    for scope in ("all", "side"):
        pool = [r for r in records if len(r["seen"] if scope == "all" else [n for n in r["seen"] if n != "text"]) >= 2]
        out: dict[str, dict] = {}
        for method in ("readout", "intervention"):
            ranks: dict[str, list[dict]] = {}
            for r in pool:
                among = r["seen"] if scope == "all" else [n for n in r["seen"] if n != "text"]
                values = r["readout"] if method == "readout" else {n: r["intervention"][n]["change"] for n in among}
                order = A.rank(values, among)
                for i, name in enumerate(order):
                    ranks.setdefault(f"rank {i + 1}", []).append(effect(r, name))
                ranks.setdefault("last", []).append(effect(r, order[-1]))
            out[method] = {k: summary(v) for k, v in ranks.items()}
            for which in ("first2", "last2"):
                key = f"{method}/{scope}/{which}"
                js = [r["joint"][key] for r in pool if key in r["joint"]]
                out[method][f"joint {which}"] = summary(js)
        key = "random" if scope == "all" else "random_side"
        out["random"] = summary([effect(r, r[key]) for r in pool if r[key]])
        deletion[scope] = {"aspects": len(pool), **out}

    agreement = {}
    for scope in ("all", "side"):
        top1, taus = [], []
        for r in records:
            among = r["seen"] if scope == "all" else [n for n in r["seen"] if n != "text"]
            if len(among) < 2:
                continue
            ro = A.rank(r["readout"], among)
            iv = A.rank({n: r["intervention"][n]["change"] for n in among}, among)
            top1.append(ro[0] == iv[0])
            taus.append(kendall(ro, iv))
        agreement[scope] = {"aspects": len(top1), "top1": round(mean(top1), 4) if top1 else None,
                            "kendall_tau": round(mean(taus), 4) if taus else None}

    per_input = {n: {"seen": sum(n in r["seen"] for r in records),
                     "readout_share": round(mean(r["readout"][n] for r in records), 4) if records else None,
                     **{k: v for k, v in summary([r["intervention"][n] for r in records if n in r["seen"]]).items()
                        if k != "n"}}
                 for n in A.INPUTS}
    breakdown = {}
    for name in ("L_i", "L_t"):
        for label, key in (("L_i names the aspect", "li_names_aspect"),
                           ("post has an image description", "has_image_description"),
                           ("L_t's stated sentiment agrees with the prediction", "lt_agrees")):
            for val in (True, False):
                rs = [r["intervention"][name] for r in records if r[key] == val and name in r["seen"]]
                breakdown[f"{name} removed; {label}: {'yes' if val else 'no'}"] = summary(rs)

    matter = None
    tckpt = args.text_checkpoint / "best" if (args.text_checkpoint / "best" / "config.json").exists() \
        else args.text_checkpoint
    if (tckpt / "config.json").exists():
        from lrsa.training.evaluate import predict_split

        tnet, ttok, tmeta = load_checkpoint(tckpt)
        trun = RunConfig.model_validate(tmeta["run"])
        tnet.set_precision(trun.train.precision)
        tsp = load_split(trun, args.split, ttok, None, None, None, args.limit)
        preds = {"lrsa": predict_split(net, sp, pad), "text": predict_split(tnet, tsp, ttok.pad_token_id or 0)}
        matter = where_rationales_matter(sp.examples, preds, rats)
        matter["text_checkpoint"] = os.path.relpath(args.text_checkpoint.resolve(), REPO)

    result = {
        "checkpoint": os.path.relpath(args.checkpoint.resolve(), REPO), "dataset": dataset, "split": args.split,
        "sentences": len(sp.examples), "aspects": len(records), "seconds": round(seconds, 1),
        "model": {"host": run.model.host, "fusion": run.model.fusion, "image_side": run.model.image_side,
                  "rationale_text": run.model.rationale_text, "fusion_gate": run.model.fusion_gate,
                  "rationale_source": run.train.rationale_source if run.model.uses_rationales else None,
                  "precision": run.train.precision},
        "training": {k: meta.get("training", {}).get(k) for k in ("dataset", "best_epoch", "rationale_source")},
        "dev_jmasa_f1": ((meta.get("training") or {}).get("dev") or {}).get("jmasa", {}).get("f1"),
        "run": meta["run"],  # the checkpoint's whole run config: how to train it again
        "deletion": deletion, "agreement": agreement, "per_input": per_input, "breakdown": breakdown,
        "where_rationales_matter": matter,
        "favoured_method": favoured(deletion), "seed": args.seed, "limit": args.limit,
        "commit": git_commit(), "machine": machine(args.threads),
    }
    out = args.out or REPO / "results" / dataset / "attribution.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def favoured(deletion: dict) -> str:
    """The method whose ranking separates more in the joint test on the side inputs (the one test that is not
    circular for the intervention method): mean change when its first two are removed together minus when its
    last two are (ties: intervention)."""
    def gap(method: str) -> float:
        d = deletion["side"][method]
        return d.get("joint first2", {}).get("mean_change", 0.0) - d.get("joint last2", {}).get("mean_change", 0.0)

    return "readout" if gap("readout") > gap("intervention") else "intervention"


def markdown(r: dict) -> str:
    def row(name: str, s: dict) -> str:
        if not s.get("n"):
            return f"| {name} | 0 | | | | |"
        return (f"| {name} | {s['n']} | {s['mean_change']:+.4f} | {100 * s['polarity_flip']:.1f} % | "
                f"{100 * s['span_flip']:.1f} % | {100 * s['any_flip']:.1f} % |")

    m = r["model"]
    lines = [f"# Attribution faithfulness: {r['dataset']} {r['split']}", "",
             f"Checkpoint `{r['checkpoint']}` (host {m['host']}, fusion {m['fusion']}, image side {m['image_side']}, "
             f"rationales {m['rationale_source']}, L_t read: {m['rationale_text']}, {m['precision']}); "
             f"trained on {r['run']['train'].get('train_limit') or 'all'} training sentences for "
             f"{r['run']['train']['epochs']} epochs (best epoch {r['training']['best_epoch']}, dev JMASA F1 "
             f"{r['dev_jmasa_f1'] if r['dev_jmasa_f1'] is None else round(r['dev_jmasa_f1'], 1)}); "
             f"{r['sentences']} sentences{' (the first ' + str(r['limit']) + ')' if r['limit'] else ''}, "
             f"{r['aspects']} predicted aspects; {r['seconds']} s on "
             f"{r['machine']['cpu_model']} ({r['machine']['threads']} thread); commit {r['commit']}.", "",
             "Generated by `benchmarks/attribution_faithfulness.py` (its docstring defines every column). Change = "
             "p(predicted polarity) before - after the removal; positive means the removed input supported the "
             "decision. The intervention method's single-removal rows are its own measurement (the ceiling); the "
             "joint rows (two inputs removed together) are not circular for either method.", ""]
    for scope, title in (("all", "All inputs (text, V, L_t, L_i)"), ("side", "Side inputs only (V, L_t, L_i)")):
        d = r["deletion"][scope]
        lines += [f"## Deletion test: {title}", "",
                  f"Aspects with at least two visible inputs in scope: {d['aspects']}.", "",
                  "| removed | n | mean change | polarity flips | span flips | any flip |", "|---|---|---|---|---|---|"]
        for method in ("readout", "intervention"):
            for k, s in d[method].items():
                lines.append(row(f"{method}: {k}", s))
        lines.append(row("random input", d["random"]))
        lines.append("")
    lines += ["## Agreement of read-out with intervention", "", "| scope | aspects | top-1 agreement | Kendall's tau |",
              "|---|---|---|---|"]
    for scope, a in r["agreement"].items():
        top1 = "" if a["top1"] is None else f"{100 * a['top1']:.1f} %"
        tau = "" if a["kendall_tau"] is None else f"{a['kendall_tau']:+.3f}"
        lines.append(f"| {scope} | {a['aspects']} | {top1} | {tau} |")
    lines += ["", "Favoured by the joint deletion test on the side inputs (larger gap between removing a method's "
              f"first two and its last two): **{r['favoured_method']}**.", "",
              "## Each input removed alone", "", "| input | aspects that see it | mean read-out share | mean change | "
              "polarity flips | span flips | any flip |", "|---|---|---|---|---|---|---|"]
    for n, s in r["per_input"].items():
        if s["seen"]:
            lines.append(f"| {n} | {s['seen']} | {s['readout_share']:.3f} | {s['mean_change']:+.4f} | "
                         f"{100 * s['polarity_flip']:.1f} % | {100 * s['span_flip']:.1f} % | "
                         f"{100 * s['any_flip']:.1f} % |")
        else:
            lines.append(f"| {n} | 0 | {s['readout_share']:.3f} | | | | |")
    lines += ["", "## Where the rationales matter (this checkpoint)", "",
              "| removed input, aspects where | n | mean change | polarity flips | span flips | any flip |",
              "|---|---|---|---|---|---|"]
    for k, s in r["breakdown"].items():
        lines.append(row(k, s))
    w = r.get("where_rationales_matter")
    if w:
        lines += ["", "## lrsa - text by what the rationale holds (gold aspects, one seed each)", "",
                  f"Gold aspects found with their polarity by this checkpoint (lrsa) and by `{w['text_checkpoint']}` "
                  "(text), grouped by the post's rationale; one seed of each, so a difference under a few points is "
                  "within seed noise (README).", "",
                  "| gold aspects where | n | lrsa recall | text recall | lrsa - text | only lrsa | only text |",
                  "|---|---|---|---|---|---|---|"]
        for k, g in w["groups"].items():
            lines.append(f"| {k} | {g['n']} | {g['recall_lrsa']:.1f} | {g['recall_text']:.1f} | {g['diff']:+.1f} | "
                         f"{g['only_lrsa']} | {g['only_text']} |")
    lines += table_breakdown_md(r.get("table_breakdown"))
    lines += masc_breakdown_md(r.get("table_breakdown_masc"))
    return "\n".join(lines) + "\n"


def _groups_table(groups: dict, metric: str) -> list[str]:
    """The per-group rows of a breakdown (lrsa and text per group, their seed-paired difference)."""
    lines = [f"| gold aspects where | n | seeds | lrsa {metric} | text {metric} | lrsa - text | std over seeds | "
             "95 % t-interval (seeds) |", "|---|---|---|---|---|---|---|---|"]
    for k, g in groups.items():
        ci = g["seed_ci95"]
        std = "" if g["diff_std"] is None else f"{g['diff_std']:.1f}"
        interval = "" if ci is None else f"[{ci['lo']:+.1f}, {ci['hi']:+.1f}]"
        lines.append(f"| {k} | {g['n']} | {g['seeds']} | {g['recall_lrsa']:.1f} | {g['recall_text']:.1f} | "
                     f"{g['diff']:+.1f} | {std} | {interval} |")
    return lines


def _overall(name: str, x: dict) -> str:
    ci = x["seed_ci95"]
    return (f"{name}: lrsa {x['lrsa']:.2f}, text {x['text']:.2f}, lrsa - text {x['diff']:+.2f} (per seed "
            f"{', '.join(f'{d:+.2f}' for d in x['per_seed'])}"
            + (f"; 95 % t-interval over seeds [{ci['lo']:+.2f}, {ci['hi']:+.2f}])" if ci else
               "; one seed: no seed-level interval, so no effect can be claimed)"))


def _carried(b: dict) -> str:
    """Which seeds' figures were carried from an earlier breakdown (their predictions were never archived)."""
    c = b.get("carried")
    if not c:
        return ""
    return (f"; {', '.join(c['seeds'])} carried from the committed breakdown (their test predictions were not "
            f"archived; their per-seed differences and means are kept), "
            f"{', '.join(b.get('archived_seeds') or []) or 'none'} from the archived predictions beside the records")


def table_breakdown_md(b: dict | None) -> list[str]:
    """The section written by benchmarks/rationale_breakdown.py (the table's runs, seed spread)."""
    if not b:
        return []
    lines = ["", f"## lrsa - text over the all-layer table's runs ({b['variant']} vs text, span host)", ""]
    if not b["seeds"]:
        return lines + [f"No seed with both runs yet ({b.get('note', '')}); `benchmarks/rationale_breakdown.py` "
                        "fills this in as the table's records land.", ""]
    lines += [f"Generated by `benchmarks/rationale_breakdown.py` from the test predictions of {len(b['seeds'])} "
              f"seed(s) ({', '.join(b['seeds'])}) of the table (`{b['rationale_source']}` rationales){_carried(b)}. "
              + _overall("JMASA F1", b["jmasa_f1"]) + ". Recall = gold aspects found with span and polarity exact; "
              "the gold label only groups the aspects.", ""]
    return lines + _groups_table(b["groups"], "recall") + [""]


def masc_breakdown_md(b: dict | None) -> list[str]:
    """The aspect host's section written by benchmarks/rationale_breakdown.py (accuracy on the given gold
    aspects, grouped by the sentiment that each aspect's reason states)."""
    if not b:
        return []
    lines = ["", f"## lrsa - text over the all-layer table's runs ({b['variant']} vs text, MASC aspect host)", ""]
    if not b["seeds"]:
        return lines + [f"No seed with both runs yet ({b.get('note', '')}).", ""]
    lines += [f"Generated by `benchmarks/rationale_breakdown.py` from the test predictions of {len(b['seeds'])} "
              f"seed(s) ({', '.join(b['seeds'])}) of the table (`{b['rationale_source']}`: MiniGPT-4's reason "
              f"written toward each aspect, read as L_t){_carried(b)}. " + _overall("MASC accuracy", b["masc_acc"])
              + ". A group's accuracy is the share of its gold aspects given their gold polarity; the gold label "
              "only groups the aspects.", ""]
    return lines + _groups_table(b["groups"], "accuracy") + [""]


if __name__ == "__main__":
    main()
