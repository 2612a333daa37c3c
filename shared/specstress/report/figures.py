"""The report's figures, each drawn from the rows of one `specstress report` table.

Nothing is computed here that a report table does not already hold: every function takes the
rows of one or two entries of `analysis.reports.REPORTS` (or the explorer's scenario list) and
turns them into a plotly figure description, a small table, or a note saying why there is none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from specstress.method import REFUSAL_TYPES

__all__ = [
    "Figure",
    "TableData",
    "cost_figure",
    "d_counts_figure",
    "d_histogram_figure",
    "figure2_figures",
    "figure4_topics_figure",
    "figure4_types_figure",
    "figure6_figure",
    "figure10_figure",
    "figure11_figure",
    "judge_agreement_table",
    "judge_flags_figure",
    "judge_pairs_figure",
    "self_preference_figure",
    "table2_figure",
]

Rows = Sequence[dict[str, Any]]
Spec = dict[str, Any]

# one colour per refusal type, from full compliance (green) to complete rejection (red)
REFUSAL_COLOURS = ("#1a9850", "#66bd63", "#a6d96a", "#fee08b", "#fdae61", "#f46d43", "#d73027")
# series colours; no red, which marks high disagreement and refusals
COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#eeca3b", "#bab0ac")


@dataclass(frozen=True)
class TableData:
    columns: list[str]
    rows: list[list[Any]]
    # per row, an optional link for the first cell
    links: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    """One figure of the report: a plot, a table, or a note saying why neither has data."""

    key: str
    title: str
    guide: str
    n: str
    plot: Spec | None = None
    table: TableData | None = None
    empty: str | None = None

    @property
    def has_data(self) -> bool:
        return self.plot is not None or (self.table is not None and bool(self.table.rows))


def _layout(title: str, x: str, y: str, **extra: Any) -> Spec:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "template": "plotly_white",
        "margin": {"l": 70, "r": 20, "t": 50, "b": 70},
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def _empty(key: str, title: str, guide: str, why: str) -> Figure:
    return Figure(key, title, guide, "n = 0", empty=why)


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _by(rows: Iterable[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped


def d_histogram_figure(rows: Rows, threshold: float) -> Figure:
    key, title = "d-histogram", "Disagreement D per model set"
    guide = (
        f"One panel per model set; each bar counts scenarios whose D (largest std of the set's "
        f"positions) falls in a 0.1-wide bin; right of the dashed line (D ≥ {threshold:g}, red) "
        "is high disagreement."
    )
    if not rows:
        return _empty(key, title, guide, "no scenario has been scored yet")
    by_set = _by(rows, "model_set")
    count = len(by_set)
    gap = 0.06
    height = (1 - gap * (count - 1)) / count
    traces: list[Spec] = []
    axes: dict[str, Any] = {}
    for i, (model_set, set_rows) in enumerate(by_set.items()):
        axis = "y" if i == 0 else f"y{i + 1}"
        traces.append(
            {
                "type": "bar",
                "name": model_set,
                "x": [(r["lower_bound"] + r["upper_bound"]) / 2 for r in set_rows],
                "y": [r["scenarios"] for r in set_rows],
                "width": 0.1,
                "yaxis": axis,
                "marker": {
                    "color": [
                        "#d62728" if r["lower_bound"] >= threshold else _colour(i) for r in set_rows
                    ]
                },
                "hovertemplate": "D %{x:.2f}: %{y} scenarios<extra>" + model_set + "</extra>",
            }
        )
        top = 1 - i * (height + gap)
        axes["yaxis" if i == 0 else f"yaxis{i + 1}"] = {
            "domain": [max(top - height, 0), top],
            "title": {"text": model_set},
            "rangemode": "tozero",
        }
    layout = _layout(
        title,
        "D",
        "scenarios",
        height=140 * count + 140,
        showlegend=False,
        xaxis={
            "title": {"text": "D (red: high disagreement)"},
            "range": [0, 3],
            "anchor": "y" if count == 1 else f"y{count}",
        },
        shapes=[
            {
                "type": "line",
                "x0": threshold,
                "x1": threshold,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"dash": "dash", "color": "#333"},
            }
        ],
        annotations=[
            {
                "x": threshold,
                "yref": "paper",
                "y": 1.02,
                "text": f"threshold {threshold:g}",
                "showarrow": False,
                "xanchor": "left",
            }
        ],
    )
    layout.update(axes)
    per_set = {r["model_set"]: 0 for r in rows}
    for r in rows:
        per_set[r["model_set"]] += r["scenarios"]
    n = ", ".join(f"{s}: {v}" for s, v in per_set.items())
    return Figure(
        key,
        title,
        guide,
        f"n = scored scenarios per set: {n}",
        plot={"data": traces, "layout": layout},
    )


def d_counts_figure(rows: Rows, threshold: float) -> Figure:
    key, title = "d-counts", "High-disagreement scenarios per model set"
    guide = (
        f"Dark bars: scenarios with D ≥ {threshold:g} in each set; light bars: all scored "
        "scenarios of the set; the hover shows the mean D."
    )
    if not rows:
        return _empty(key, title, guide, "no scenario has been scored yet")
    sets = [r["model_set"] for r in rows]
    traces = [
        {
            "type": "bar",
            "name": "scored",
            "x": sets,
            "y": [r["scenarios"] for r in rows],
            "marker": {"color": "#c6dbef"},
            "customdata": [round(float(r["mean_d"]), 3) for r in rows],
            "hovertemplate": "%{x}: %{y} scored, mean D %{customdata}<extra></extra>",
        },
        {
            "type": "bar",
            "name": f"D ≥ {threshold:g}",
            "x": sets,
            "y": [r["high_disagreement"] for r in rows],
            "marker": {"color": "#08519c"},
            "text": [r["high_disagreement"] for r in rows],
            "textposition": "outside",
        },
    ]
    total = max(int(r["scenarios"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = up to {total} scenarios per set",
        plot={"data": traces, "layout": _layout(title, "model set", "scenarios", barmode="group")},
    )


def figure2_figures(rows: Rows) -> list[Figure]:
    """One line chart per spec: frequent non-compliance by D bin, majority and any-judge."""
    guide = (
        "Share of judged scenarios in each D bin where every judged answer of the spec's family "
        "was flagged: solid = majority of judges, dotted = any judge."
    )
    if not rows:
        return [
            _empty(
                "figure2",
                "Figure 2: frequent non-compliance by D",
                guide,
                "no verdicts yet: judges rule only on high-disagreement scenarios",
            )
        ]
    figures = []
    for (spec_id, version), spec_rows in _by(
        ({**r, "spec": (r["spec_id"], r["spec_version"])} for r in rows), "spec"
    ).items():
        title = f"Figure 2: frequent non-compliance by D — spec {spec_id} v{version}"
        traces = []
        for i, (model_set, set_rows) in enumerate(_by(spec_rows, "model_set").items()):
            for rule, dash in (("majority", "solid"), ("any", "dot")):
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "lines+markers",
                        "name": f"{model_set}, {rule} rule",
                        "x": [r["bin_label"] for r in set_rows],
                        "y": [r[f"{rule}_rate"] for r in set_rows],
                        "customdata": [r["scenarios"] for r in set_rows],
                        "line": {"dash": dash, "color": _colour(i)},
                        "hovertemplate": "D %{x}: %{y:.0%} of %{customdata} scenarios<extra>"
                        + f"{model_set}, {rule}</extra>",
                    }
                )
        n = sum(int(r["scenarios"]) for r in spec_rows)
        layout = _layout(
            title,
            "D bin",
            "frequent non-compliance rate",
            yaxis={
                "title": {"text": "frequent non-compliance rate"},
                "tickformat": ".0%",
                "range": [0, 1.05],
            },
        )
        figures.append(
            Figure(
                f"figure2-{spec_id}-{version}",
                title,
                guide,
                f"n = {n} judged scenarios",
                plot={"data": traces, "layout": layout},
            )
        )
    return figures


def figure4_types_figure(rows: Rows, scenarios: str, model_set: str) -> Figure:
    which = "every scored scenario" if scenarios == "all" else "high-disagreement scenarios"
    key = f"figure4-{scenarios}"
    title = f"Figure 4: refusal types per model ({which}, set {model_set})"
    guide = (
        "Share of each model's answers of each type, from full compliance (green) to complete "
        "rejection (red); the last three types count as refusals."
    )
    rows = [r for r in rows if r["scenarios"] == scenarios and r["model_set"] == model_set]
    if not rows:
        return _empty(key, title, guide, "no answer has a refusal type yet")
    models = [r["model_key"] for r in rows]
    traces = []
    for kind, colour in zip(REFUSAL_TYPES, REFUSAL_COLOURS, strict=True):
        column = kind.lower().replace(" ", "_")
        traces.append(
            {
                "type": "bar",
                "name": kind,
                "x": models,
                "y": [r[column] / r["answers"] for r in rows],
                "customdata": [r[column] for r in rows],
                "marker": {"color": colour},
                "hovertemplate": "%{x}: %{customdata} answers (%{y:.0%})<extra>"
                + kind
                + "</extra>",
            }
        )
    n = sum(int(r["answers"]) for r in rows)
    layout = _layout(
        title,
        "model",
        "share of answers",
        barmode="stack",
        yaxis={"title": {"text": "share of answers"}, "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.25, "traceorder": "normal"},
    )
    return Figure(key, title, guide, f"n = {n} answers", plot={"data": traces, "layout": layout})


def figure4_topics_figure(rows: Rows, model_set: str) -> Figure:
    key = "figure4-topics"
    title = f"Figure 4: refusal rate per topic and model (set {model_set})"
    guide = (
        "Each cell: share of the model's answers refused among scenarios labelled with the topic "
        "(topics are labelled on high-disagreement scenarios only); hover for counts."
    )
    rows = [r for r in rows if r["scenarios"] == "all" and r["model_set"] == model_set]
    if not rows:
        return _empty(key, title, guide, "no topic labels yet (only flagged scenarios get them)")
    models = sorted({r["model_key"] for r in rows})
    topics = sorted({r["topic"] for r in rows})
    cell = {(r["topic"], r["model_key"]): r for r in rows}
    z = [[cell[(t, m)]["refusal_rate"] if (t, m) in cell else None for m in models] for t in topics]
    text = [
        [
            f"{cell[(t, m)]['refusals']} of {cell[(t, m)]['answers']}" if (t, m) in cell else ""
            for m in models
        ]
        for t in topics
    ]
    trace = {
        "type": "heatmap",
        "x": models,
        "y": topics,
        "z": z,
        "text": text,
        "zmin": 0,
        "zmax": 1,
        "colorscale": "Reds",
        "colorbar": {"title": {"text": "refusal rate"}, "tickformat": ".0%"},
        "hovertemplate": "%{y} / %{x}: %{z:.0%} (%{text})<extra></extra>",
    }
    n = sum(int(r["answers"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = {n} answer-topic pairs",
        plot={"data": [trace], "layout": _layout(title, "model", "topic")},
    )


def figure6_figure(rows: Rows) -> Figure:
    key, title = "figure6", "Figure 6: outliers per model"
    guide = (
        "Scenarios where the model's answer sits at least min_gap spectrum positions away from "
        "most of its set's other answers, per model set; hover for the rate."
    )
    if not rows:
        return _empty(key, title, guide, "no scenario has been scored yet")
    traces = []
    for i, (model_set, set_rows) in enumerate(_by(rows, "model_set").items()):
        traces.append(
            {
                "type": "bar",
                "name": model_set,
                "x": [r["model_key"] for r in set_rows],
                "y": [r["outlier_scenarios"] for r in set_rows],
                "customdata": [
                    [r["scenarios"], round(float(r["outlier_rate"] or 0) * 100, 1)]
                    for r in set_rows
                ],
                "marker": {"color": _colour(i)},
                "hovertemplate": "%{x}: %{y} of %{customdata[0]} scenarios "
                "(%{customdata[1]}%)<extra>" + model_set + "</extra>",
            }
        )
    n = max(int(r["scenarios"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = up to {n} scenarios per model",
        plot={
            "data": traces,
            "layout": _layout(title, "model", "outlier scenarios", barmode="group"),
        },
    )


_UNMAPPED = (
    "distinctive values have not been mapped to categories yet (run `specstress map-values`)"
)


def _latest_mapping(rows: Rows) -> tuple[tuple[str, str], Rows]:
    """The newest (taxonomy version, embedding key) of a category view, and its rows alone."""
    latest = (rows[0]["taxonomy_version"], rows[0]["embedding_key"])
    return latest, [r for r in rows if (r["taxonomy_version"], r["embedding_key"]) == latest]


def figure10_figure(rows: Rows) -> Figure:
    key, title = "figure10", "Figure 10: value categories each model prioritises"
    guide = (
        "Answers per model showing each level-2 value category (by the nearest category of "
        "their distinctive values); darker = more answers."
    )
    if not rows:
        return _empty(key, title, guide, _UNMAPPED)
    latest, rows = _latest_mapping(rows)
    models = sorted({r["model_key"] for r in rows})
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["category"]] = totals.get(r["category"], 0) + int(r["responses"])
    categories = sorted(totals, key=lambda c: -totals[c])[:25]
    cell = {(r["category"], r["model_key"]): int(r["responses"]) for r in rows}
    trace = {
        "type": "heatmap",
        "x": models,
        "y": categories,
        "z": [[cell.get((c, m), 0) for m in models] for c in categories],
        "colorscale": "Blues",
        "colorbar": {"title": {"text": "answers"}},
        "hovertemplate": "%{x} / %{y}: %{z} answers<extra></extra>",
    }
    return Figure(
        key,
        title,
        guide,
        f"n = {sum(totals.values())} answer-category pairs ({latest[0]}, {latest[1]})",
        plot={"data": [trace], "layout": _layout(title, "model", "category", height=600)},
    )


def figure11_figure(rows: Rows) -> Figure:
    key, title = "figure11", "Figure 11: co-occurrence of value categories across models"
    guide = (
        "P(model B shows category Y | model A shows category X), averaged over model pairs, "
        "for the most frequent categories; darker = the two go together more often."
    )
    if not rows:
        return _empty(key, title, guide, _UNMAPPED)
    _, rows = _latest_mapping(rows)
    sums: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        sums.setdefault((r["category_x"], r["category_y"]), []).append(float(r["probability"]))
    weight: dict[str, float] = {}
    for (x, _), probabilities in sums.items():
        weight[x] = weight.get(x, 0.0) + sum(probabilities)
    categories = sorted(weight, key=lambda c: -weight[c])[:15]
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    trace = {
        "type": "heatmap",
        "x": categories,
        "y": categories,
        "z": [[mean.get((x, y)) for y in categories] for x in categories],
        "zmin": 0,
        "zmax": 1,
        "colorscale": "Purples",
        "colorbar": {"title": {"text": "P(Y | X)"}},
        "hovertemplate": "X %{y} → Y %{x}: %{z:.2f}<extra></extra>",
    }
    return Figure(
        key,
        title,
        guide,
        f"n = {len(rows)} (model pair, category pair) rows",
        plot={
            "data": [trace],
            "layout": _layout(title, "category Y (model B)", "category X (model A)", height=650),
        },
    )


def table2_figure(rows: Rows) -> Figure:
    key, title = "table2", "Table 2: all-family-fail rate per subset"
    guide = (
        "Share of sampled, judged scenarios where every answer of the spec's family was flagged, "
        "on every scenario (random) and on each set's high-disagreement ones."
    )
    if not rows:
        return _empty(key, title, guide, "no verdicts yet")
    labels = [
        [f"spec {r['spec_id']} v{r['spec_version']}" for r in rows],
        ["random" if r["subset"] == "random" else f"high D: {r['model_set']}" for r in rows],
    ]
    traces = [
        {
            "type": "bar",
            "name": f"{rule} rule",
            "x": labels,
            "y": [r[f"{rule}_rate"] for r in rows],
            "marker": {"color": colour},
        }
        for rule, colour in (("majority", "#4c78a8"), ("any", "#f58518"))
    ]
    table = TableData(
        ["spec", "subset", "model set", "subset size", "sampled", "judged", "majority", "any"],
        [
            [
                f"{r['spec_id']} v{r['spec_version']}",
                r["subset"],
                r["model_set"] or "",
                r["subset_size"],
                r["sampled"],
                r["judged"],
                _rate(r["majority_rate"]),
                _rate(r["any_rate"]),
            ]
            for r in rows
        ],
    )
    layout = _layout(
        title,
        "subset",
        "all-family-fail rate",
        barmode="group",
        yaxis={"title": {"text": "all-family-fail rate"}, "tickformat": ".0%", "range": [0, 1.05]},
    )
    n = sum(int(r["judged"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = {n} judged scenarios",
        plot={"data": traces, "layout": layout},
        table=table,
    )


def _rate(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


def judge_flags_figure(rows: Rows) -> Figure:
    key, title = "judges", "Judges: flag rate of each judge"
    guide = "Share of each judge's verdicts that flag the answer (non-compliant or ambiguous)."
    if not rows:
        return _empty(key, title, guide, "no verdicts yet")
    traces = [
        {
            "type": "bar",
            "name": "non-compliant",
            "x": [f"{r['judge']} ({r['spec_id']})" for r in rows],
            "y": [r["non_compliant"] / r["verdicts"] for r in rows],
            "marker": {"color": "#d73027"},
        },
        {
            "type": "bar",
            "name": "ambiguous",
            "x": [f"{r['judge']} ({r['spec_id']})" for r in rows],
            "y": [r["ambiguous"] / r["verdicts"] for r in rows],
            "marker": {"color": "#fdae61"},
        },
    ]
    layout = _layout(
        title,
        "judge",
        "flag rate",
        barmode="stack",
        yaxis={"title": {"text": "flag rate"}, "tickformat": ".0%"},
    )
    n = sum(int(r["verdicts"]) for r in rows)
    return Figure(key, title, guide, f"n = {n} verdicts", plot={"data": traces, "layout": layout})


def judge_pairs_figure(rows: Rows) -> Figure:
    key, title = "judge-pairs", "Judges: pairwise agreement on flagging"
    guide = "Each cell: share of the answers both judges rated on which they agree about flagging."
    if not rows:
        return _empty(key, title, guide, "fewer than two judges have ruled on the same answer")
    judges = sorted({r["judge_a"] for r in rows} | {r["judge_b"] for r in rows})
    agreement = {(r["judge_a"], r["judge_b"]): r for r in rows}
    agreement.update({(r["judge_b"], r["judge_a"]): r for r in rows})
    z = [
        [
            1.0 if a == b else agreement[(a, b)]["flag_agreement"] if (a, b) in agreement else None
            for b in judges
        ]
        for a in judges
    ]
    trace = {
        "type": "heatmap",
        "x": judges,
        "y": judges,
        "z": z,
        "zmin": 0,
        "zmax": 1,
        "colorscale": "Greens",
        "texttemplate": "%{z:.2f}",
        "colorbar": {"title": {"text": "agreement"}},
    }
    n = max(int(r["responses"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = up to {n} answers per pair",
        plot={"data": [trace], "layout": _layout(title, "judge", "judge")},
    )


def judge_agreement_table(rows: Rows) -> Figure:
    key, title = (
        "judge-agreement",
        "Judges: ensemble agreement (Fleiss' kappa, Krippendorff's alpha)",
    )
    guide = (
        "Agreement beyond chance on flagged-or-not and on the three decisions: 1 is perfect, 0 is "
        "chance level; flag rates under the majority and any-judge rules for comparison."
    )
    if not rows:
        return _empty(key, title, guide, "no verdicts yet")
    table = TableData(
        ["spec", "judges", "statistic", "basis", "answers", "value"],
        [
            [
                f"{r['spec_id']} v{r['spec_version']}",
                r["judges"],
                r["statistic"],
                r["basis"],
                r["answers"],
                "—" if r["value"] is None else f"{float(r['value']):.3f}",
            ]
            for r in rows
        ],
    )
    n = max(int(r["answers"]) for r in rows)
    return Figure(key, title, guide, f"n = {n} answers", table=table)


def self_preference_figure(rows: Rows) -> Figure:
    key, title = "self-preference", "Judges: self-preference"
    guide = (
        "Each judge's flag rate on each model next to the other judges' rate on the very same "
        "answers; ★ marks a judge ruling on its own maker's model (lower than others = lenient)."
    )
    if not rows:
        return _empty(key, title, guide, "no verdicts yet")
    labels = [
        [r["judge"] for r in rows],
        [f"{r['model_key']}{' ★' if r['same_vendor'] else ''}" for r in rows],
    ]
    traces = [
        {
            "type": "bar",
            "name": "this judge",
            "x": labels,
            "y": [r["flag_rate"] for r in rows],
            "marker": {"color": "#4c78a8"},
        },
        {
            "type": "bar",
            "name": "other judges, same answers",
            "x": labels,
            "y": [r["other_judges_flag_rate"] for r in rows],
            "marker": {"color": "#bab0ac"},
        },
    ]
    layout = _layout(
        title,
        "judge, then judged model",
        "flag rate",
        barmode="group",
        yaxis={"title": {"text": "flag rate"}, "tickformat": ".0%"},
    )
    n = sum(int(r["verdicts"]) for r in rows)
    return Figure(key, title, guide, f"n = {n} verdicts", plot={"data": traces, "layout": layout})


def cost_figure(rows: Rows) -> Figure:
    key, title = "costs", "Cost and tokens per stage and model"
    guide = (
        "Tokens each stage spent per model (input + output; cached and reasoning in the table); "
        "cost is what the providers' prices make of them (0 on the simulator)."
    )
    if not rows:
        return _empty(key, title, guide, "no LLM call recorded")
    traces = []
    for i, (model_key, model_rows) in enumerate(_by(rows, "model_key").items()):
        traces.append(
            {
                "type": "bar",
                "name": model_key,
                "x": [r["stage"] for r in model_rows],
                "y": [int(r["input_tokens"]) + int(r["output_tokens"]) for r in model_rows],
                "marker": {"color": _colour(i)},
            }
        )
    table = TableData(
        ["stage", "model", "calls", "failed", "input", "output", "cached", "reasoning", "cost USD"],
        [
            [
                r["stage"],
                r["model_key"],
                r["calls"],
                r["failed_calls"],
                r["input_tokens"],
                r["output_tokens"],
                r["cached_tokens"],
                r["reasoning_tokens"],
                f"{float(r['cost_usd']):.4f}",
            ]
            for r in rows
        ],
    )
    calls = sum(int(r["calls"]) for r in rows)
    cost = sum(float(r["cost_usd"]) for r in rows)
    return Figure(
        key,
        title,
        guide,
        f"n = {calls} calls, ${cost:.2f}",
        plot={"data": traces, "layout": _layout(title, "stage", "tokens", barmode="stack")},
        table=table,
    )
