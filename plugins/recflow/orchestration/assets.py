"""Assets that connect the DAGs: validated lake partitions and the champion pointer."""

from __future__ import annotations

from airflow.sdk import Asset

#: Updated by ingestion for every validated day (the day travels in the event's ``extra``).
VALIDATED_INTERACTIONS = Asset("recflow://lake/interactions")
#: Updated when a new champion is promoted; batch scoring runs on it.
CHAMPION = Asset("recflow://registry/champion")
#: Updated for every published batch-score partition (day, model_version and rows in the ``extra``).
BATCH_SCORES = Asset("recflow://lake/scores")
