"""Rebuild the sample corpus shipped in src/cavegpt/data/sample/ (the no-download demo's data).

Source: the Python documentation's topic texts, as CPython ships them in ``pydoc_data/topics.py``
(© Python Software Foundation, PSF License Version 2). Each topic becomes one document, long ones
cut at paragraph breaks into pieces of about 4,500 characters. Run with the Python whose
documentation you want: ``python tools/build_sample_corpus.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pydoc_data.topics

from cavegpt.data.prepare import prepare

OUT = Path(__file__).resolve().parents[1] / "src" / "cavegpt" / "data" / "sample"
PIECE_CHARS = 4500


def pieces(text: str) -> list[str]:
    out, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > PIECE_CHARS:
            out.append(current.strip())
            current = ""
        current += paragraph + "\n\n"
    if current.strip():
        out.append(current.strip())
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        count = 0
        for topic in sorted(pydoc_data.topics.topics):
            for piece in pieces(pydoc_data.topics.topics[topic]):
                (Path(tmp) / f"{count:05d}_{topic}.txt").write_text(piece, encoding="utf-8")
                count += 1
        for old in OUT.glob("sample_*.bin"):
            old.unlink()
        report = prepare([tmp], OUT, val_tokens=10_240, name="sample", seed=1234, progress=False)
    dataset = OUT / "dataset.json"
    dataset.write_text(dataset.read_text().replace(tmp, f"pydoc_data.topics of Python {sys.version.split()[0]}"))
    print(f"{count} documents: train {report.train['tokens']} tokens, val {report.val['tokens']} tokens")


if __name__ == "__main__":
    main()
