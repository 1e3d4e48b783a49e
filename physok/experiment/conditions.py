"""The five experimental conditions of the paper (DESIGN.md §1).

A condition says which tokeniser the rollout model starts from (none = random weights, the
in-domain tokeniser pretrained on the downstream dataset, or the out-of-domain one pretrained
on a mixture of other datasets) and how it trains (every weight, or "mostly frozen": only the
tokeniser's heads and bottleneck layers plus the whole processor).
"""

from __future__ import annotations

from dataclasses import dataclass

TOKENISER_SOURCES: tuple[str, ...] = ("in_domain", "out_of_domain")


@dataclass(frozen=True)
class Condition:
    """One rollout-training condition."""

    name: str
    label: str
    tokeniser: str | None  # None | "in_domain" | "out_of_domain"
    strategy: str  # "trainable" | "mostly_frozen"


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("no_pretraining", "No pretraining", None, "trainable"),
        Condition("in_domain_trainable", "In-domain, trainable", "in_domain", "trainable"),
        Condition("in_domain_frozen", "In-domain, mostly frozen", "in_domain", "mostly_frozen"),
        Condition(
            "out_of_domain_trainable", "Out-of-domain, trainable", "out_of_domain", "trainable"
        ),
        Condition(
            "out_of_domain_frozen",
            "Out-of-domain, mostly frozen",
            "out_of_domain",
            "mostly_frozen",
        ),
    )
}
CONDITION_ORDER: tuple[str, ...] = tuple(CONDITIONS)
BASELINE = "no_pretraining"


def get_condition(name: str) -> Condition:
    """The condition called `name`, with an error listing the valid names."""
    try:
        return CONDITIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown condition {name!r}; choose from {list(CONDITION_ORDER)}"
        ) from None


def tokenisers_needed(conditions: tuple[str, ...]) -> tuple[str, ...]:
    """The pretraining stages the given conditions use, in canonical order."""
    used = {get_condition(c).tokeniser for c in conditions}
    return tuple(t for t in TOKENISER_SOURCES if t in used)
