"""Peak RSS and tokens/s of `cavegpt data prepare` on growing inputs (does memory stay flat?).

Builds jsonl inputs of 1, 4 and 8 copies of the textmix training text (≈ 68, 270 and 545 MB;
decoded back from the shards, each copy's documents tagged so no two are identical), runs
`cavegpt data prepare` on each under `/usr/bin/time` and reads that run's peak RSS. Usage: python benchmarks/prepare_memory.py TEXTMIX_DIR WORK_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cavegpt.data.shards import read_tokens
from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.model.masks import EOT_TOKEN


def textmix_documents(folder: Path) -> list[str]:
    encoding = gpt2_encoding()
    docs = []
    for shard in sorted(folder.glob("textmix_train_*.bin")):
        tokens = read_tokens(shard)
        starts = np.flatnonzero(tokens == EOT_TOKEN)
        docs += encoding.decode_batch([tokens[a + 1:b].tolist() for a, b in zip(starts, [*starts[1:], tokens.size])])
    return docs


def main() -> None:
    textmix, work = Path(sys.argv[1]), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    docs = textmix_documents(textmix)
    rows = []
    for copies in (1, 4, 8):
        source = work / f"input_x{copies}.jsonl"
        with open(source, "w", encoding="utf-8") as f:
            for copy in range(copies):
                for doc in docs:
                    f.write(json.dumps({"text": f"[copy {copy}] {doc}"}) + "\n")
        size_mb = source.stat().st_size / 1e6
        start = time.perf_counter()
        timed = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", sys.executable, "-m", "cavegpt", "data", "prepare",
                                str(source), "--out", str(work / f"out_x{copies}"), "--val-tokens", "1048576"],
                               check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_mb = int(timed.stderr.rsplit("PEAK_KB", 1)[1]) / 1024
        record = json.loads((work / f"out_x{copies}" / "dataset.json").read_text())
        tokens = record["train"]["tokens"] + record["val"]["tokens"]
        rows.append((size_mb, tokens, seconds, tokens / seconds, peak_mb))
        source.unlink()
    print(f"{'input MB':>9} {'tokens':>12} {'seconds':>8} {'tokens/s':>10} {'peak RSS MB':>12}")
    for size_mb, tokens, seconds, rate, peak in rows:
        print(f"{size_mb:>9.0f} {tokens:>12,} {seconds:>8.1f} {rate:>10,.0f} {peak:>12.0f}")


if __name__ == "__main__":
    main()
