"""The exploration policy as a spec declares it: plain values, no NumPy, so the training DAG can read
specs at parse time (:mod:`recflow.scoring.explore` applies it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from recflow.constants import DEFAULT_SEED

_POLICY_KEYS: Final = frozenset({"new_within_days", "min_interactions", "slots", "user_share", "seed"})


@dataclass(frozen=True)
class ExplorePolicy:
    """What counts as new, where it is shown and to whom (a spec's ``exploration:`` mapping)."""

    new_within_days: int = 7
    min_interactions: int = 5
    #: 1-based positions of the top-K that may show a new item.
    slots: tuple[int, ...] = (10,)
    user_share: float = 0.1
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.new_within_days < 0 or self.min_interactions < 0:
            raise ValueError(
                f"new_within_days and min_interactions must be >= 0, got {self.new_within_days}, "
                f"{self.min_interactions}"
            )
        if not self.slots or any(s < 1 for s in self.slots) or len(set(self.slots)) != len(self.slots):
            raise ValueError(f"slots must be distinct positions >= 1, got {list(self.slots)}")
        if not 0.0 <= self.user_share <= 1.0:
            raise ValueError(f"user_share must be in [0, 1], got {self.user_share}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExplorePolicy:
        """From a spec or artifact mapping; unknown keys are an error (a typo must not turn exploration off)."""
        unknown = sorted(set(raw) - _POLICY_KEYS)
        if unknown:
            raise ValueError(f"exploration takes {sorted(_POLICY_KEYS)}, got unknown keys {unknown}")
        slots = raw.get("slots", cls.slots)
        return cls(
            new_within_days=int(raw.get("new_within_days", cls.new_within_days)),
            min_interactions=int(raw.get("min_interactions", cls.min_interactions)),
            slots=tuple(sorted(int(s) for s in ([slots] if isinstance(slots, int) else slots))),
            user_share=float(raw.get("user_share", cls.user_share)),
            seed=int(raw.get("seed", cls.seed)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "new_within_days": self.new_within_days,
            "min_interactions": self.min_interactions,
            "slots": list(self.slots),
            "user_share": self.user_share,
            "seed": self.seed,
        }
