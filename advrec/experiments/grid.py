"""Grids of experiment runs: every combination of an experiment file's ``grid`` values is a cell,
run once and cached in its own folder, so an interrupted grid resumes where it stopped.

    experiment: poison
    quick: true
    grid:                       # field -> the values it takes; the cells are every combination
      attacks: [[random], [average], [bandwagon]]
      sizes: [[0.03], [0.05]]
    workers: 2                  # cells in parallel processes (the same numbers as one by one)

A cell's folder is ``OUT/cells/<first 12 hex of its config's SHA-256>/`` and holds the
experiment's usual report; it is written under a ``.partial`` name and renamed when complete, so
a killed run leaves no half cell that would be taken for a finished one. ``OUT/grid.json`` and
``OUT/grid.md`` list the cells: their values, whether this run computed them or found them, their
seconds and how many of the report's acceptance checks hold.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from ..report import format_table
from .files import ExperimentFile, run
from .provenance import config_sha256

CELL_FILE = "cell.json"


def _cell(args: Tuple[ExperimentFile, Any, Path, Dict[str, Any], Path]) -> float:
    """Run one cell into ``<dir>.partial``, then rename it ``<dir>``; returns its seconds."""
    spec, config, folder, values, out = args
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    start = time.perf_counter()
    track_dir = str(spec.tracking_to(out)) if spec.track else None
    run(ExperimentFile(spec.experiment, False, config, track=spec.track, track_dir=track_dir), out=partial,
        run_name=f"{spec.experiment}-{folder.name}")
    seconds = time.perf_counter() - start
    (partial / CELL_FILE).write_text(json.dumps({"values": values, "config_sha256": config_sha256(config),
                                                 "seconds": seconds}, default=list, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return seconds


def _cell_in_process(args) -> float:
    import torch

    torch.set_num_threads(1)
    return _cell(args)


def run_grid(spec: ExperimentFile, out: Union[str, Path]) -> List[Dict[str, Any]]:
    """Run the cells of ``spec`` not already in ``out`` (``spec.workers`` at a time), then write
    ``grid.json`` / ``grid.md``; returns one record per cell, in grid order."""
    from .files import KINDS

    out = Path(out)
    stem = KINDS[spec.experiment].module
    records: List[Dict[str, Any]] = []
    todo: Dict[str, Tuple[ExperimentFile, Any, Path, Dict[str, Any], Path]] = {}
    for values, config in spec.cells():
        digest = config_sha256(config)
        folder = out / "cells" / digest[:12]
        cached = (folder / f"{stem}.json").is_file() and (folder / CELL_FILE).is_file()
        records.append({"values": values, "config_sha256": digest, "folder": f"cells/{digest[:12]}",
                        "status": "found" if cached else "computed"})
        if not cached:
            todo.setdefault(digest, (spec, config, folder, values, out))
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for partial in (out / "cells").glob("*.partial"):   # cells a killed run left unfinished
        shutil.rmtree(partial, ignore_errors=True)
    jobs = list(todo.values())
    if spec.workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(spec.workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_cell_in_process, jobs))
    else:
        for job in jobs:
            _cell(job)
    for r in records:
        folder = out / r["folder"]
        r["seconds"] = json.loads((folder / CELL_FILE).read_text())["seconds"]
        checks = json.loads((folder / f"{stem}.json").read_text()).get("acceptance", [])
        holds = [c.get("holds", c.get("passed")) for c in checks]
        r["checks_holding"] = f"{sum(h is True for h in holds)}/{len(holds)}"
    (out / "grid.json").write_text(json.dumps({"experiment": spec.experiment, "file": spec.to_dict(),
                                               "cells": records}, default=list, indent=1))
    (out / "grid.md").write_text(render(spec, records, markdown=True) + "\n")
    return records


def render(spec: ExperimentFile, records: List[Dict[str, Any]], markdown: bool = False) -> str:
    """The cells as a table: grid values, folder, computed / found, seconds, checks holding."""
    def show(v: Any) -> str:
        return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    rows = [{**{k: show(v) for k, v in r["values"].items()}, "folder": r["folder"], "status": r["status"],
             "seconds": r["seconds"], "checks holding": r["checks_holding"]} for r in records]
    head = f"Grid of `{spec.experiment}`: {len(records)} cells, {sum(r['status'] == 'computed' for r in records)} " \
           f"computed by this run"
    return head + "\n\n" + format_table(rows, markdown=markdown, digits=1)


__all__ = ["run_grid", "render", "CELL_FILE"]
