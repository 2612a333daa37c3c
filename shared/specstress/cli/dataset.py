"""`specstress export` and `specstress import`: a study in the paper's released schema or in our
own lossless dump, out of and into the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from specstress.analysis import ALL_SCENARIOS
from specstress.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    SelectionOption,
    console,
    fail,
    load,
    run_async,
)
from specstress.dataset import ExportFormat, export_dataset, import_dataset

__all__ = ["export_command", "import_command"]


def _mapping(pairs: list[str], option: str) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise fail(f"{option} takes KEY=VALUE, not {pair!r}")
        found[key.strip()] = value.strip()
    return found


def export_command(
    out: Annotated[Path, typer.Option("--out", help="folder to write into")],
    output: Annotated[
        ExportFormat,
        typer.Option("--format", help="hf: the paper's parquet schema; jsonl/csv: lossless dump"),
    ] = ExportFormat.hf,
    config: ConfigOption = DEFAULT_CONFIG,
    model_set: Annotated[
        str | None, typer.Option("--model-set", help="hf: only this model set's split")
    ] = None,
    selection: SelectionOption = ALL_SCENARIOS,
) -> None:
    """Export the study: the paper's dataset schema (parquet) or every table (JSONL, CSV)."""
    cfg = load(config)
    manifest = run_async(
        export_dataset(
            cfg, out, output, model_set=model_set, selection=selection, config_name=config.name
        )
    )
    counts = manifest.get("counts") or {}
    console.print(f"wrote {output.value} export to {out}")
    for name, files in (manifest.get("files") or {}).items():
        console.print(f"  {name}: {', '.join(files)}")
    if counts:
        console.print("  " + ", ".join(f"{t} {n}" for t, n in counts.items() if n))


def import_command(
    path: Annotated[Path, typer.Argument(help="a file or folder: our export or the release")],
    config: ConfigOption = DEFAULT_CONFIG,
    family: Annotated[
        list[str] | None,
        typer.Option("--family", help="MODEL=FAMILY for a model whose family is not evident"),
    ] = None,
    judge: Annotated[
        list[str] | None,
        typer.Option("--judge", help="STEM=JUDGE: the judge key of a <stem>_decision column"),
    ] = None,
) -> None:
    """Import a dataset as facts; D and every report then work without calling a model."""
    cfg = load(config)
    summary = run_async(
        import_dataset(
            cfg,
            path,
            families=_mapping(family or [], "--family"),
            judges=_mapping(judge or [], "--judge"),
        )
    )
    console.print(
        f"imported {summary.rows_read} rows from {len(summary.files)} file(s); "
        f"D recomputed for {summary.scenarios_scored} scenarios"
    )
    if summary.inserted:
        console.print("  new: " + ", ".join(f"{t} {n}" for t, n in summary.inserted.items()))
    for model, fam in summary.models.items():
        console.print(f"  model {model}: family {fam}")
    for reason, n in summary.skipped.items():
        console.print(f"  [yellow]skipped {n}:[/yellow] {reason}")
