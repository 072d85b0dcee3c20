#!/usr/bin/env python3
"""Train Guard Mode's detection head (engine/data/head.npz) on audio whose licence allows it.

Usage (from the repository root, in the project's venv)::

    python models/train_head.py            # train, write the head, print the figures
    python models/train_head.py --check    # fit again, compare with the committed head (CI)

Data: the ESC-10 clips of the published development folds 1-3 in ``../shared/audio/dev-ext``
whose ``license`` column in its MANIFEST.tsv is CC0 or CC-BY (the attribution of every clip is in
that manifest; ``models/head/MODEL_CARD.md`` lists them), and 29 gunshot sounds from a Debian
package (``models/debian_audio.py``: fetched with apt-get into ``--cache``, checked by sha256;
they are never held out, as "fold 0"). Never UrbanSound8K (CC BY-NC:
evaluation and threshold tuning only), never a -SA, -NC or -ND licence, never ``dev-impacts``
(kept for evaluation). Nothing is downloaded at run time.

Each clip is streamed through the engine exactly as a satellite's audio is (regular and
onset-aligned windows, the shipped tagger); the windows within 15 dB of the clip's loudest are
its examples, but for the late aligned ones (mostly the quiet before a sound; the head judges
them, it does not learn from them). One logistic regression per class (L2, class-balanced,
Newton's method in float64) is fitted on the unit-length embeddings: the head's classes are in
:data:`CLASSES`. Before the final fit, each ESC-10 fold is held out in turn and the figures on it
are printed (they go into the model card). ``--check`` makes only the final fit and compares
weights within a tolerance (float summation order differs between BLAS builds, so bytes may
not).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from custom_components.guard_mode.engine.analyze import with_silence  # noqa: E402
from custom_components.guard_mode.engine.analyzer import StreamAnalyzer  # noqa: E402
from custom_components.guard_mode.engine.audio import read_audio  # noqa: E402
from custom_components.guard_mode.engine.frontend import SAMPLE_RATE  # noqa: E402
from custom_components.guard_mode.engine.head import DEFAULT_HEAD, read_head  # noqa: E402
from custom_components.guard_mode.engine.learning import unit  # noqa: E402
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger  # noqa: E402
from models.debian_audio import fetch  # noqa: E402

AUDIO = REPO.parent / "shared" / "audio"
ATTRIBUTION = REPO / "models" / "head" / "ATTRIBUTION.tsv"
CACHE = REPO / "models" / "head" / ".cache"  # the Debian package and its clips (not committed)
# Head class -> the clip labels (manifest ``label`` / ESC class) that are its positives.
CLASSES: dict[str, frozenset[str]] = {
    "dog_bark": frozenset({"dog"}),
    "baby_cry": frozenset({"baby"}),
    "crackling_fire": frozenset({"crackling_fire"}),
    "rooster": frozenset({"rooster"}),
    "clock_tick": frozenset({"clock_tick"}),
    "rain": frozenset({"rain"}),
    "gunshot": frozenset({"gunshot"}),
}
REFUSED = ("SA", "NC", "ND")  # licence elements that rule a clip out
ACTIVE_DB = 15.0  # a clip's windows within this of its loudest are examples of its label
L2 = 1.0  # ridge penalty (sklearn C = 1)
CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class Clip:
    """One licensed training clip."""

    path: Path
    label: str
    fold: int  # ESC-10 fold; 0 for the packaged clips (never held out)
    attribution: str
    licence: str


def licensed(licence: str) -> bool:
    """Return True for CC0 and CC-BY licences (never -SA, -NC, -ND)."""
    text = licence.strip().upper()
    if any(f"-{tag}" in text or f" {tag}" in text for tag in REFUSED):
        return False
    return text.startswith(("CC0", "CC-BY", "CC BY"))


def find_clips(audio: Path, cache: Path) -> list[Clip]:
    """Return the ESC-10 clips whose manifest licence allows training, and the packaged ones."""
    clips = [
        Clip(
            path,
            "gunshot",
            0,
            f"{src.attribution} (Debian {src.package}: /{src.path})",
            src.license,
        )
        for src, path in fetch(cache)
    ]
    with (audio / "dev-ext" / "MANIFEST.tsv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if "ESC-10" not in row["source"] or not licensed(row["license"]):
                continue
            label = {"crying_baby": "baby"}.get(row["class"], row["class"])
            clips.append(
                Clip(audio / "dev-ext" / row["file"], label, int(row["fold"]),
                     row["attribution"], row["license"])
            )  # fmt: skip
    return clips


def window_embeddings(samples: npt.NDArray[np.float32], tagger: Tagger) -> npt.NDArray[np.float32]:
    """Return the unit embeddings of a clip's windows within ACTIVE_DB of its loudest."""
    analyzer = StreamAnalyzer()
    padded = with_silence(samples)
    rows, peaks, late = [], [], []
    for start in range(0, len(padded), SAMPLE_RATE):
        pending = analyzer.feed(padded[start : start + SAMPLE_RATE])
        if pending.needs_tagger:
            output = tagger.infer(pending.patches, embeddings=True)
            assert output.embeddings is not None
            rows.append(unit(output.embeddings))
            tagged = [w for w in pending.windows if w.tagged]
            peaks += [w.peak_db for w in tagged]
            late += [w.late for w in tagged]
    if not rows:
        return np.zeros((0, 1024), np.float32)
    embeddings, level = np.concatenate(rows), np.array(peaks)
    return embeddings[(level >= level.max() - ACTIVE_DB) & ~np.array(late)]


def fit_logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], l2: float = L2
) -> tuple[npt.NDArray[np.float64], float]:
    """Fit a class-balanced, L2-regularised logistic regression by Newton's method."""
    n, d = x.shape
    positives = max(int(y.sum()), 1)
    weight = np.where(y, n / (2 * positives), n / (2 * max(n - positives, 1)))
    xb = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the bias is not penalised
    w = np.zeros(d + 1)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        gradient = xb.T @ (weight * (p - y)) + penalty * w
        hessian = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_head(
    examples: list[tuple[Clip, npt.NDArray[np.float32]]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Fit every class; return weights [1024, K] and biases [K]."""
    x = np.concatenate([e for _, e in examples]).astype(np.float64)
    labels = np.concatenate([np.full(len(e), clip.label) for clip, e in examples])
    weights, biases = [], []
    for positives in CLASSES.values():
        w, b = fit_logistic(x, np.isin(labels, list(positives)))
        weights.append(w)
        biases.append(b)
    return np.stack(weights, axis=1).astype(np.float32), np.array(biases, np.float32)


def held_out_figures(examples: list[tuple[Clip, npt.NDArray[np.float32]]]) -> list[str]:
    """Hold out each ESC-10 fold in turn; return the figures on it, one line per class."""
    lines = []
    names = list(CLASSES)
    for fold in sorted({clip.fold for clip, _ in examples} - {0}):
        train = [(c, e) for c, e in examples if c.fold != fold]
        test = [(c, e) for c, e in examples if c.fold == fold]
        weights, bias = fit_head(train)
        for k, name in enumerate(names):
            mine = [e for c, e in test if c.label in CLASSES[name]]
            other = [e for c, e in test if c.label not in CLASSES[name]]
            score = [1 / (1 + np.exp(-(e @ weights[:, k] + bias[k]))).max() for e in mine]
            wrong = [1 / (1 + np.exp(-(e @ weights[:, k] + bias[k]))).max() for e in other]
            mine_figures = (
                f"its clips with a window >= 0.9: {sum(s >= 0.9 for s in score)}/{len(score)}; "
                f">= 0.7: {sum(s >= 0.7 for s in score)}/{len(score)}; "
                if score
                else ""  # gunshot: its clips are never held out
            )
            lines.append(
                f"fold {fold} {name:<15} {mine_figures}"
                f"other clips >= 0.7: {sum(s >= 0.7 for s in wrong)}/{len(wrong)}"
            )
    return lines


def train(
    clips: list[Clip], *, held_out: bool = True
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[str]]:
    """Return the head's weights, biases and figures (the held-out ones cost three more fits)."""
    tagger = load_tagger(backend="onnxruntime")
    examples = []
    for clip in clips:
        embeddings = window_embeddings(read_audio(clip.path).samples, tagger)
        if len(embeddings):
            examples.append((clip, embeddings))
    counts = {name: sum(c.label in p for c, _ in examples) for name, p in CLASSES.items()}
    figures = [f"{len(examples)} clips, {sum(len(e) for _, e in examples)} windows; {counts}"]
    if held_out:
        figures += held_out_figures(examples)
    weights, bias = fit_head(examples)
    return weights, bias, figures


def write(path: Path, weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> str:
    """Write the head file; return its sha256."""
    np.savez(path, classes=np.array(list(CLASSES)), weights=weights, bias=bias)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_attribution(path: Path, clips: list[Clip]) -> None:
    """Write who made each training clip, under which licence (CC-BY asks for it)."""
    lines = ["file\tclass\tfold\tlicence\tattribution"]
    lines += [
        f"{c.path.name}\t{c.label}\t{c.fold}\t{c.licence}\t{c.attribution}"
        for c in sorted(clips, key=lambda c: c.path.name)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    """Run from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=AUDIO)
    parser.add_argument("--cache", type=Path, default=CACHE, help="where packaged clips are kept")
    parser.add_argument("--check", action="store_true", help="compare with the committed head")
    args = parser.parse_args()
    clips = find_clips(args.audio, args.cache)
    weights, bias, figures = train(clips, held_out=not args.check)
    for line in figures:
        print(line)
    if args.check:
        shipped = read_head(DEFAULT_HEAD)
        difference = max(
            float(np.abs(shipped.weights - weights).max()), float(np.abs(shipped.bias - bias).max())
        )
        if shipped.classes != tuple(CLASSES) or difference > CHECK_TOLERANCE:
            sys.exit(f"the committed head differs from a fresh fit (max |diff| {difference:.2e})")
        print(f"head OK: a fresh fit matches the committed one (max |diff| {difference:.2e})")
        return
    digest = write(DEFAULT_HEAD, weights, bias)
    write_attribution(ATTRIBUTION, clips)
    print(f"wrote {DEFAULT_HEAD.relative_to(REPO)} sha256 {digest}")


if __name__ == "__main__":
    main()
