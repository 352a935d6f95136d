"""The MLflow tag names a trial writes and the pipeline reads (see :mod:`trial_image.contract`)."""

from __future__ import annotations

from typing import Final

EXPERIMENT: Final = "katib.experiment"
TRIAL: Final = "katib.trial"
NAMESPACE: Final = "katib.namespace"
ROLE: Final = "nasflow.role"  # trial | final | experiment | pipeline
ALGORITHM: Final = "nasflow.algorithm"
CANDIDATE_ID: Final = "nasflow.candidate_id"
FRONTEND: Final = "nasflow.frontend"
DATASET: Final = "nasflow.dataset"
TASK: Final = "nasflow.task"  # classification | regression (trial_image/tasks.py)
FAMILY: Final = "nasflow.family"  # image | table | text | series: what the model takes
DATA_DIGEST: Final = "nasflow.data_digest"  # of every split the run read (data/lineage.py)
TEST_DIGEST: Final = "nasflow.test_digest"  # of the test split it was evaluated on
SEARCH_SPACE: Final = "nasflow.search_space"
SOURCE_TRIAL: Final = "nasflow.source_trial"
COMPARED_WITH: Final = "nasflow.compared_with"
GENOTYPE: Final = "nasflow.genotype"
FAILURE_REASON: Final = "nasflow.failure_reason"
VARIANT: Final = "nasflow.variant"  # float32 | float16 | int8-dynamic | int8-full | pruned-P | ...
SOURCE_MODEL: Final = "nasflow.source_model"  # models:/NAME/VERSION a variant was made from
WORKERS: Final = "nasflow.workers"  # processes that trained it (a TrainJob's numNodes)
CHECKPOINT_LINEAGE: Final = "nasflow.checkpoint_lineage"  # trials whose weights it went on from
