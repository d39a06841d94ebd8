"""Data statistics and integrity checks: duplicates, leakage between splits and datasets, label conflicts.

Two examples are "the same post" when their texts agree after removing all white space and
lower-casing (Twitter-2015 splits ``#`` off as a token, Twitter-2017 does not) and their image ids agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lrsa.data.readers import ReadReport
from lrsa.data.registry import DATASETS, get, load_dataset, resolve_data_dir
from lrsa.data.schema import Example


def post_key(ex: Example) -> tuple[str, str | None]:
    return ("".join(ex.text.split()).lower(), ex.image_id)


def _labels(ex: Example) -> tuple[tuple[int, int, str], ...]:
    return tuple((a.start, a.end, a.polarity) for a in ex.aspects)


def split_stats(examples: list[Example]) -> dict[str, int]:
    pol = Counter(a.polarity for ex in examples for a in ex.aspects)
    return {
        "sentences": len(examples),
        "aspects": sum(len(ex.aspects) for ex in examples),
        "POS": pol["POS"],
        "NEU": pol["NEU"],
        "NEG": pol["NEG"],
        "multi_aspect_sentences": sum(len(ex.aspects) > 1 for ex in examples),
    }


def load_splits(name: str, data_dir: str | Path | None = None, lenient: bool = False,
                reports: dict[str, ReadReport] | None = None) -> dict[str, list[Example]]:
    out = {}
    for s in get(name).splits:
        report = ReadReport(s)
        out[s] = load_dataset(name, s, data_dir, lenient=lenient, report=report)
        if reports is not None:
            reports[s] = report
    return out


def stats(name: str, data_dir: str | Path | None = None,
          side: dict[str, dict[str, list[str]]] | None = None, lenient: bool = False) -> dict[str, Any]:
    """Per-split counts; with ``side`` given, the share of examples whose image has each side input.
    With ``lenient``, malformed records are skipped and each split reports ``skipped`` and the reasons."""
    out: dict[str, Any] = {}
    reports: dict[str, ReadReport] = {}
    for split, exs in load_splits(name, data_dir, lenient, reports).items():
        row: dict[str, Any] = split_stats(exs)
        if lenient:
            row["skipped"] = len(reports[split].skipped)
            row["skip_reasons"] = reports[split].skipped
        if side:
            with_image = [ex for ex in exs if ex.image_id]
            row["side_coverage"] = {
                kind: {"covered": sum(ex.image_id in table for ex in with_image),
                       "of": len(with_image)}
                for kind, table in side.items()
            }
        out[split] = row
    return out


def check(name: str, data_dir: str | Path | None = None,
          others: list[str] | None = None,
          loaded: dict[str, dict[str, list[Example]]] | None = None) -> dict[str, Any]:
    """Find exact duplicates inside each split, posts shared between splits, posts shared with other
    named datasets (``others``: default every other dataset present in the data directory), and posts
    that carry different gold labels where they occur. ``loaded`` (dataset -> its splits) is filled and
    reused, so that checking several datasets reads each file once."""
    loaded = {} if loaded is None else loaded

    def splits_of(n: str) -> dict[str, list[Example]]:
        if n not in loaded:
            loaded[n] = load_splits(n, data_dir)
        return loaded[n]

    splits = splits_of(name)
    root = resolve_data_dir(data_dir)
    index: dict[tuple, list[tuple[str, Example]]] = defaultdict(list)
    for split, exs in splits.items():
        for ex in exs:
            index[post_key(ex)].append((split, ex))

    duplicates = []
    for split, exs in splits.items():
        groups: dict[tuple, list[Example]] = defaultdict(list)
        for ex in exs:
            groups[post_key(ex)].append(ex)
        for group in groups.values():
            if len(group) > 1:
                duplicates.append({"split": split, "ids": [ex.id for ex in group],
                                   "image_id": group[0].image_id, "text": group[0].text})

    cross_split = []
    conflicts = []
    for occ in index.values():
        split_names = sorted({s for s, _ in occ})
        if len(split_names) > 1:
            cross_split.append({"splits": split_names, "ids": [ex.id for _, ex in occ],
                                "image_id": occ[0][1].image_id, "text": occ[0][1].text})
        if len({_labels(ex) for _, ex in occ}) > 1:
            conflicts.append({"ids": [ex.id for _, ex in occ], "text": occ[0][1].text,
                              "labels": {ex.id: [list(t) for t in _labels(ex)] for _, ex in occ}})

    if others is None:
        others = [o for o in DATASETS if o != name
                  and all((root / rel).exists() for rel in get(o).splits.values())]
    cross_dataset = []
    for other in others:
        if other == name:
            continue
        for o_split, o_exs in splits_of(other).items():
            o_labels = {post_key(ex): _labels(ex) for ex in o_exs}
            for split, exs in splits.items():
                shared = [ex for ex in exs if post_key(ex) in o_labels]
                if shared:
                    differ = [ex.id for ex in shared if o_labels[post_key(ex)] != _labels(ex)]
                    cross_dataset.append({"split": split, "other": other, "other_split": o_split,
                                          "count": len(shared), "labels_differ": len(differ),
                                          "ids": [ex.id for ex in shared]})

    warnings = []
    for split in ("dev", "test"):
        for row in cross_split:
            if split in row["splits"] and "train" in row["splits"]:
                warnings.append(f"{row['ids']}: a {split} post also occurs in train")
    test_leaks = [r for r in cross_dataset if r["split"] == "test" and r["other_split"] != "test"]
    for r in test_leaks:
        warnings.append(f"{r['count']} {name} test posts occur in {r['other']} {r['other_split']}: "
                        f"a model trained on {r['other']} must not be evaluated on {name} test")

    return {
        "dataset": name,
        "duplicates_within_split": duplicates,
        "overlap_between_splits": cross_split,
        "overlap_with_other_datasets": cross_dataset,
        "conflicting_labels": conflicts,
        "warnings": warnings,
        "summary": {
            "duplicates_within_split": len(duplicates),
            "overlap_between_splits": len(cross_split),
            "overlap_with_other_datasets": sum(r["count"] for r in cross_dataset),
            "conflicting_labels": len(conflicts),
        },
    }
