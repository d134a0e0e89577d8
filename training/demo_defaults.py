"""The settings the demo starts from for a model, measured rather than guessed, kept in the model's own folder.

The model card's metadata holds them under `demo:`; this module derives them from the card's evaluation tables
(the ones `assemble_checkpoint.py` copies in from `evaluate.py` / `evaluate_text_to_image.py`) and writes them:

    python training/demo_defaults.py --model checkpoints/mnist --guidance_sweep mnist-cfg \
        --thresholding_sweep mnist-thresholding

- the guidance scale: of the guidance sweep's settings whose samples the evaluation classifier recognises at least
  as often as real test images (accuracy >= the real-data row's; for text models, the best two-item alignment), the
  one with the lowest FD (own classifier). FD climbs steeply with w, so "as recognisable as real data, at the
  least cost in realism" rather than a fixed w;
- the thresholding: the mode with the lowest FD in the thresholding sweep (none when the model has none to compare);
- the sampler and its steps: given (default our DPM-Solver++(2M), 20 steps), recorded so that the app and the card
  agree. Each value keeps a line saying where it came from (`why`).
"""

import argparse

from guided_diffusers.training.model_card import read_model_card, write_card_metadata

DEMO_KEY = "demo"
FALLBACK = {"sampler": "dpm2m", "num_inference_steps": 20, "guidance_scale": 3.0, "classifier_scale": 0.0}
REAL_ROW = "real data"


def markdown_tables(text: str) -> list[list[dict]]:
    """Every markdown table in `text` as a list of rows, each a {column header: cell text} dict."""
    tables, lines = [], text.splitlines() + [""]
    header = None
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            header = None
        elif header is None:
            header, rows = cells, []
            tables.append(rows)
        elif not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(header, cells)))
    return [rows for rows in tables if rows]


def section(body: str, name: str) -> str:
    """The text of the card's `## Evaluation: <name>` section; ValueError naming the sections there are."""
    parts = {chunk.partition("\n")[0].strip(): chunk for chunk in body.split("\n## ")[1:]}
    key = f"Evaluation: {name}"
    if key not in parts:
        found = ", ".join(p.removeprefix("Evaluation: ") for p in parts if p.startswith("Evaluation: "))
        raise ValueError(f"the model card has no evaluation {name!r}; it has: {found or 'none'}.")
    return parts[key]


def number(cell: str) -> float:
    return float(cell.rstrip("%")) / (100 if cell.endswith("%") else 1)


def column(row: dict, *names: str) -> str:
    """The first of `names` that the row has (class and text evaluations name their columns differently)."""
    for name in names:
        if name in row:
            return row[name]
    raise ValueError(f"an evaluation table without any of the columns {', '.join(names)}: {list(row)}.")


def fd(row: dict) -> float:
    return number(row["FD (own classifier)"])


def best_guidance(rows: list[dict], sweep: str) -> tuple[float, str]:
    """(w, why): the lowest FD among the guided rows at least as recognisable as real data."""
    real = [row for row in rows if next(iter(row.values())).startswith(REAL_ROW)]
    guided = [row for row in rows if row not in real and number(row.get("classifier_scale", "0") or "0") == 0]
    if not guided:
        raise ValueError(f"{sweep}: no classifier-free guidance rows to choose a scale from.")
    if "accuracy" in guided[0]:
        target = number(real[0]["accuracy"]) if real else 0.99
        score, name = (lambda row: number(row["accuracy"])), f"accuracy >= the real data's {target:.1%}"
    else:  # text models: the classifier judges whether both named items are drawn
        score = lambda row: number(row["two-item alignment (both right)"])  # noqa: E731
        target, name = max(map(score, guided)), "the best two-item alignment"
    eligible = [row for row in guided if score(row) >= target] or [max(guided, key=score)]
    best = min(eligible, key=fd)
    w = number(column(best, "guidance_scale", "guidance"))
    why = f"{sweep}: lowest FD (own classifier), {fd(best):.4g}, among the settings with {name}"
    return w, why


def best_thresholding(rows: list[dict], sweep: str) -> tuple[str, str]:
    """(mode, why): the thresholding with the lowest FD in the sweep."""
    rows = [row for row in rows if row.get("thresholding") not in (None, "", "-")]
    best = min(rows, key=fd)
    return best["thresholding"], f"{sweep}: lowest FD (own classifier), {fd(best):.4g}, of {len(rows)} settings"


def measured_defaults(body: str, guidance_sweep: str, thresholding_sweep: str | None, sampler: str, steps: int) -> dict:
    """The `demo:` metadata for a model card body (see the module docstring)."""
    guidance_rows = [row for table in markdown_tables(section(body, guidance_sweep)) for row in table]
    thresholding_rows = guidance_rows if thresholding_sweep is None else [
        row for table in markdown_tables(section(body, thresholding_sweep)) for row in table]  # fmt: skip
    thresholding, thresholding_why = best_thresholding(thresholding_rows, thresholding_sweep or guidance_sweep)
    guidance_rows = [row for row in guidance_rows if row.get("thresholding", thresholding) in (thresholding, "-", "")]
    w, guidance_why = best_guidance(guidance_rows, guidance_sweep)
    return {"sampler": sampler, "num_inference_steps": steps, "guidance_scale": w, "classifier_scale": 0.0,
            "thresholding": thresholding,
            "why": {"guidance_scale": guidance_why, "thresholding": thresholding_why,
                    "sampler": f"{sampler}, {steps} steps: chosen for speed on a CPU (see the quality-per-step benchmark)"}}  # fmt: skip


def read_demo_defaults(folder, latent: bool) -> dict:
    """The demo settings a model folder records, over the fallbacks (static clipping for pixel models, none for
    latent ones, whose x0 has no pixel range to clip to)."""
    defaults = {**FALLBACK, "thresholding": "none" if latent else "static"}
    if folder is None:  # a Hub model without a local card
        return defaults
    try:
        metadata = read_model_card(folder)[0] or {}
    except (OSError, ValueError):  # no card, or one without front matter: the fallbacks
        return defaults
    recorded = metadata.get(DEMO_KEY) or {}
    return {**defaults, **{key: value for key, value in recorded.items() if key in defaults}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model folder with a model card holding its evaluations")
    parser.add_argument("--guidance_sweep", required=True, help="the evaluation section with the CFG sweep")
    parser.add_argument("--thresholding_sweep", default=None, help="the evaluation section comparing thresholding")
    parser.add_argument("--sampler", default=FALLBACK["sampler"])
    parser.add_argument("--num_inference_steps", type=int, default=FALLBACK["num_inference_steps"])
    args = parser.parse_args(argv)
    metadata, body = read_model_card(args.model)
    metadata[DEMO_KEY] = measured_defaults(body, args.guidance_sweep, args.thresholding_sweep, args.sampler,
                                           args.num_inference_steps)  # fmt: skip
    write_card_metadata(args.model, metadata)
    print(f"{args.model}: demo defaults {metadata[DEMO_KEY]}")


if __name__ == "__main__":
    main()
