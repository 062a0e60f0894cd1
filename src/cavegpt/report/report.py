"""``cavegpt report``: the seed's leaderboard row and loss.png for a run; ``--compare`` puts runs side by side.

The leaderboard asks for: hardware (GPU model, VRAM), wall-clock training time from the start of
step 0 to the final validation, tokens seen, final val loss and step, the script and exact command.
We give the time both without validation (the speedrun's ``train_time``) and with it.
"""

from __future__ import annotations

from pathlib import Path

from cavegpt.report.plot import plot_runs
from cavegpt.report.runs import Run, load_run
from cavegpt.train.display import duration


def hardware(run: Run) -> str:
    env = run.environment
    if env.get("gpu"):
        return f"1× {env['gpu']} ({env['gpu_memory_gib']:.0f} GiB)"
    if env:
        return f"CPU ({env.get('cpu') or 'unknown'})"
    return "unknown (no run.json)"


def clock_name(run: Run) -> str:
    """What the leaderboard's time measures for this run."""
    return "Time to target" if run.target_val is not None else "Time to final val (target not reached)"


def leaderboard_fields(run: Run) -> dict[str, str]:
    """Every field of the seed's leaderboard row, plus what makes the row reproducible."""
    env = run.environment
    final = run.final_val
    if run.target is None:
        target = "none set (train.target_val_loss)"
    elif run.target_val is not None:
        target = f"{run.target}: reached at step {run.target_val['step']}"
    else:
        target = f"{run.target}: not reached"
    fields = {"Run": run.name, "Hardware": hardware(run), "Target val loss": target}
    if final is None:
        fields["Val loss"] = "no validation recorded"
        return {**fields, "Command": f"`{env.get('command', '?')}`"}
    tokens = final["tokens"]
    train_s = final["train_time_ms"] / 1000
    wall_s = final.get("wall_time_ms", final["train_time_ms"]) / 1000
    clock = clock_name(run)
    fields.update({
        "Val loss": f"{final['val_loss']:.4f} @ step {final['step']}",
        f"{clock}, validation excluded": duration(train_s),
        f"{clock}, validation included": duration(wall_s),
        "Tokens trained": f"{tokens:,} ({tokens / 1e9:.3g}B)",  # one form for every run, tiny or speedrun
        "Throughput": f"{tokens / train_s:,.0f} tokens/s" if train_s > 0 else "?",
        "Training script": f"cavegpt {env.get('cavegpt', '?')}",
        "Command": f"`{env.get('command', '?')}`",
        "cavegpt commit": env.get("commit", "?"),
        **({"Your repository's commit": env["user_commit"]} if env.get("user_commit") else {}),
        "PyTorch": env.get("torch", "?") + (f" (CUDA {env['cuda']})" if env.get("cuda") else ""),
        "Started": env.get("started_at", "?"),
    })
    return fields


def leaderboard_row(run: Run) -> str:
    """The row for the seed README's table (its columns, in its order)."""
    f = leaderboard_fields(run)
    clock = f.get(f"{clock_name(run)}, validation excluded", "—")
    return (f"| – | (you) | {f['Hardware']} | {f.get('Tokens trained', '—')} | **{f['Val loss']}** | {clock} | "
            f"{f.get('Throughput', '—')} | {f.get('Training script', '—')} | {f['Command']} |")


LEADERBOARD_HEADER = ("| Rank | Trainer | Hardware | Tokens Trained | Val Loss | Time to Target | Throughput | "
                      "Training Script | Command |\n|---|---|---|---|---|---|---|---|---|")


def comparison_table(runs: list[Run]) -> str:
    """Markdown: one row per field, one column per run."""
    columns = [leaderboard_fields(run) for run in runs]
    keys = list(dict.fromkeys(k for c in columns for k in c))
    lines = ["| | " + " | ".join(c["Run"] for c in columns) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(c.get(k, "—") for c in columns) + " |" for k in keys if k != "Run"]
    return "\n".join(lines)


def write_report(folder: str | Path, compare: list[str | Path] = (), notes: list[str] = ()) -> tuple[Path, Path, str]:
    """Write ``report.md`` and ``loss.png`` in ``folder`` (and ``compare.png`` with ``compare``); ``notes``
    become a section of their own (the speedrun's word on the other recipe).

    Returns the report's path, the plot's path and the text to print.
    """
    run = load_run(folder)
    plot_runs([run], run.folder / "loss.png")
    fields = leaderboard_fields(run)
    text = [f"# cavegpt run {run.name}", "", "## Leaderboard row", "", LEADERBOARD_HEADER, leaderboard_row(run), "",
            "## Details", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in fields.items()], "",
            "![loss against steps and training minutes](loss.png)", ""]
    if notes:
        text += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    shown = "\n".join(f"{k}: {v}" for k, v in fields.items())
    plot = run.folder / "loss.png"
    if compare:
        runs = [run, *(load_run(other) for other in compare)]
        plot = run.folder / "compare.png"
        plot_runs(runs, plot)
        table = comparison_table(runs)
        text += ["## Comparison", "", table, "", "![runs compared](compare.png)", ""]
        shown = table
    report = run.folder / "report.md"
    report.write_text("\n".join(text))
    return report, plot, shown
