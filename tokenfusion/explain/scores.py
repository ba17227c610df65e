"""How each map of a shipped checkpoint scored against the SynthShapes masks, and which map scored best.

The scoring command (``bench/score_explanations.py``) writes one results file per model,
``bench/results/explain_scores_<arch>.json``: the command and its settings, and one row per method,
layer and token kind with the pointing game, the energy inside the mask, deletion and insertion AUC,
the randomisation check's rank correlation and the number of blank maps, each a mean over held-out
images. Files written since the controls also hold, per checkpoint, a control row (method
:data:`CENTRE_PRIOR`, family :data:`CONTROL_FAMILY`: one fixed centred Gaussian for every image), and
on every row the same map's pointing game and energy against another image's mask and whether it
:func:`localises` (beats both controls). This module reads those files from the folder it is given
(it runs none of the scoring, and knows no repository layout) so that a page can open on the map
that is faithful for the model at hand and show its scores beside it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BLANK_LIMIT", "CENTRE_PRIOR", "CONTROL_FAMILY", "RANDOMISATION_LIMIT", "MapScore", "best_map",
           "is_control", "localises", "read_scores", "score_of", "scores_for"]

#: A map fails the randomisation check (Adebayo et al. 2018) when its mean rank correlation with the
#: maps of the progressively randomised model stays above this: it hardly depends on what was learned.
RANDOMISATION_LIMIT = 0.5
#: A map is mostly blank when more than this share of the scored images gave a constant map.
BLANK_LIMIT = 0.5
#: The family of the results files' control rows: maps that ignore the image they are scored on.
CONTROL_FAMILY = "control"
#: The method name of the centre-prior control row (:func:`~tokenfusion.explain.metrics.centre_prior`).
CENTRE_PRIOR = "centre-prior"


def is_control(row: dict[str, Any]) -> bool:
    """True for a results file's control row (family :data:`CONTROL_FAMILY`)."""
    return row.get("family") == CONTROL_FAMILY or row.get("method") == CENTRE_PRIOR


def localises(row: dict[str, Any], centre: dict[str, Any] | None) -> bool | None:
    """Whether the map of a results ``row`` localises the object: its pointing game and its mask energy
    are both above those of the centre prior (``centre``: the control row of the same checkpoint,
    scored on the same images) and above the same map's scores against mismatched masks
    (``pointing_game_mismatched``, ``mask_energy_mismatched``: image i's map against the mask of
    image i + 1). False for a control row; None when a figure is missing (files written before the
    controls)."""
    if is_control(row):
        return False
    keys = ("pointing_game", "mask_energy")
    if centre is None or any(row.get(k) is None or row.get(f"{k}_mismatched") is None or centre.get(k) is None
                             for k in keys):
        return None
    return all(row[k] > centre[k] and row[k] > row[f"{k}_mismatched"] for k in keys)


@dataclass(frozen=True)
class MapScore:
    """The scores of one map (``method`` at ``layer``/``kind``; None where the method takes none),
    means over ``images`` held-out SynthShapes images. ``pointing_game`` and ``mask_energy`` in
    [0, 1], higher better; ``deletion_auc`` lower better, ``insertion_auc`` higher better;
    ``randomisation_spearman`` lower better (None when not measured); ``blank_maps``: images whose
    map was blank (None in files written before blank maps were counted). ``pointing_game_mismatched``,
    ``mask_energy_mismatched``: the same maps scored against another image's mask; ``localises``: whether
    the map beats both controls (:func:`localises`); all three None in files written before the controls."""

    method: str
    layer: str | None
    kind: str | None
    images: int
    pointing_game: float
    mask_energy: float
    deletion_auc: float
    insertion_auc: float
    randomisation_spearman: float | None = None
    blank_maps: int | None = None
    pointing_game_mismatched: float | None = None
    mask_energy_mismatched: float | None = None
    localises: bool | None = None

    @property
    def target(self) -> tuple[str | None, str | None]:
        """``(layer, kind)`` as :func:`~tokenfusion.explain.available_methods` lists targets."""
        return self.layer, self.kind

    @property
    def problems(self) -> list[str]:
        """Why the map fails its sanity checks, in words (empty when it passes them)."""
        found = []
        rho = self.randomisation_spearman
        if rho is not None and rho > RANDOMISATION_LIMIT:
            found.append(f"fails the randomisation check: it stays alike when the model's weights are randomised "
                         f"(rank correlation {rho:.2f} > {RANDOMISATION_LIMIT})")
        if self.blank_maps is not None and self.images and self.blank_maps / self.images > BLANK_LIMIT:
            found.append(f"is blank on {self.blank_maps} of {self.images} held-out images")
        return found

    @property
    def badges(self) -> list[str]:
        """The scores as short labels: pointing game, deletion vs insertion AUC, randomisation."""
        rho = "not measured" if self.randomisation_spearman is None else f"{self.randomisation_spearman:.2f}"
        badges = [f"pointing {self.pointing_game:.0%}",
                  f"deletion {self.deletion_auc:.2f} · insertion {self.insertion_auc:.2f}",
                  f"randomisation ρ {rho}"]
        if self.localises is not None:  # files written before the controls do not say
            badges.append("localises" if self.localises else "does not beat the controls")
        return badges


def _optional(row: dict[str, Any], key: str) -> float | None:
    return None if row.get(key) is None else float(row[key])


def _score(row: dict[str, Any], centre: dict[str, Any] | None = None) -> MapScore:
    """``row`` as a :class:`MapScore`; ``centre``: the control row of its checkpoint, for files whose
    rows do not say whether they localise."""
    judged = row.get("localises")
    judged = localises(row, centre) if judged is None else bool(judged)
    return MapScore(
        method=str(row["method"]), layer=row.get("layer"), kind=row.get("kind"), images=int(row["images"]),
        pointing_game=float(row["pointing_game"]), mask_energy=float(row["mask_energy"]),
        deletion_auc=float(row["deletion_auc"]), insertion_auc=float(row["insertion_auc"]),
        randomisation_spearman=None if row.get("randomisation_spearman") is None
        else float(row["randomisation_spearman"]),
        blank_maps=None if row.get("blank_maps") is None else int(row["blank_maps"]),
        pointing_game_mismatched=_optional(row, "pointing_game_mismatched"),
        mask_energy_mismatched=_optional(row, "mask_energy_mismatched"), localises=judged,
    )


def read_scores(rows: Iterable[dict[str, Any]], checkpoint: str) -> list[MapScore]:
    """The scores of the maps in the rows of a results file whose ``checkpoint`` is the file name
    ``checkpoint`` (its control rows left out: they are no map a page can draw)."""
    mine = [row for row in rows if row.get("checkpoint") == checkpoint]
    centre = next((row for row in mine if is_control(row)), None)
    return [_score(row, centre) for row in mine if not is_control(row)]


def _scored_files(report: dict[str, Any], root: Path) -> list[Path]:
    """The checkpoint files a results file was computed on: its settings' paths (files, or folders
    of checkpoints), relative to the repository root ``root`` unless absolute."""
    paths = []
    for entry in report.get("settings", {}).get("checkpoints", []):
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        paths += sorted(path.iterdir()) if path.is_dir() else [path]
    return paths


def scores_for(checkpoint: Path, folder: Path) -> list[MapScore] | None:
    """The scores of ``checkpoint`` from the results files of ``folder`` (``explain_scores_*.json``,
    checkpoint paths in their settings relative to ``folder/../..``, where the command ran):
    those of a file whose settings name this very file (same file on disk, so an upload that shares
    a shipped checkpoint's name is not mistaken for it). None when no file scored it, or when the file
    cannot be read (a scoring run rewriting it)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        return None
    for path in sorted(folder.glob("explain_scores_*.json")):
        try:
            report = json.loads(path.read_text())
            scored = [p for p in _scored_files(report, folder.parents[1]) if p.is_file()]
            if not any(p.samefile(checkpoint) for p in scored):
                continue
            scores = read_scores(report.get("results", []), checkpoint.name)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if scores:
            return scores
    return None


#: How :func:`best_map` orders maps by :attr:`MapScore.localises`: those that beat the controls first,
#: then those of files that do not say, then those that do not beat them.
_LOCALISES_RANK = {True: 2, None: 1, False: 0}


def _rank(score: MapScore) -> tuple[float, ...]:
    return (_LOCALISES_RANK[score.localises], score.pointing_game, score.mask_energy,
            score.insertion_auc - score.deletion_auc)


def best_map(scores: Iterable[MapScore], methods: Iterable[str] | None = None) -> MapScore | None:
    """Among the maps that pass their sanity checks (see :attr:`MapScore.problems`), of ``methods``
    when given: a map that localises (beats the centre prior and its own mismatched-mask scores,
    :attr:`MapScore.localises`) before one whose file does not say, before one that does not; then
    the map that points into the object most often (ties: more energy on the object, then the
    larger gap of insertion over deletion AUC). None when no map qualifies."""
    allowed = None if methods is None else set(methods)
    passing = [s for s in scores if not s.problems and (allowed is None or s.method in allowed)]
    return max(passing, key=_rank, default=None)


def score_of(scores: Iterable[MapScore] | None, method: str, layer: str | None, kind: str | None) -> MapScore | None:
    """The score of ``method`` at ``layer``/``kind``, or None when it was not scored."""
    return next((s for s in scores or () if (s.method, s.layer, s.kind) == (method, layer, kind)), None)
