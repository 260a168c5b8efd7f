"""The study vocabulary is defined once (app/design.py): no other module under app/ or workers/ spells out the
conditions, norms, datasets or devices again as a list of names, and the vocabulary itself is consistent.
(Tables keyed by dataset, such as training recipes, are data about the datasets and may live elsewhere.)"""

from __future__ import annotations

import ast
from pathlib import Path

from app import design

REPO = Path(__file__).resolve().parents[2]
VOCABULARY = {
    frozenset(design.CONDITIONS): "conditions",
    frozenset(design.NORMS): "norms",
    frozenset(design.DATASETS): "datasets",
    frozenset(design.DEVICES): "devices",
}


def _literal_sets(tree: ast.AST):  # type: ignore[no-untyped-def]
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2:
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                yield node.lineno, frozenset(e.value for e in node.elts)  # type: ignore[attr-defined]


def test_the_vocabulary_is_spelled_out_only_in_app_design() -> None:
    found = []
    for path in sorted([*REPO.joinpath("app").rglob("*.py"), *REPO.joinpath("workers").rglob("*.py")]):
        if path == REPO / "app" / "design.py":
            continue
        for line, values in _literal_sets(ast.parse(path.read_text(encoding="utf-8"))):
            if values in VOCABULARY:
                found.append(f"{path.relative_to(REPO)}:{line}: the {VOCABULARY[values]} again")
    assert not found, "import them from app.design instead:\n" + "\n".join(found)


def test_the_vocabulary_is_consistent() -> None:
    assert set(design.PAPER_DATASET) == set(design.NORMS) == set(design.DEFAULT_SOURCE_IMAGES)
    for norm, dataset in design.PAPER_DATASET.items():
        assert norm in design.DATASET_NORMS[dataset] and design.study_pair_problem(dataset, norm) is None
    assert design.study_pair_problem("cifar10", "l0") and design.study_pair_problem("svhn", "l2")
    assert (design.DEFAULT_SOURCE_IMAGES["l0"], design.DEFAULT_SOURCE_IMAGES["l2"]) == (75, 100)
    assert set(design.IMAGE_SHAPES) == set(design.CLASS_NAMES) == set(design.DEFAULT_MODELS) == set(design.DATASETS)
    assert all(len(v) == design.NUM_CLASSES for v in design.CLASS_NAMES.values())
    assert design.l0_max_pixels(28, 28) == 117 and design.linf_levels() == 25
