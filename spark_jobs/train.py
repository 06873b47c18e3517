"""Train one model family on a lake window, evaluate it on the time-based hold-out, register the candidate.

Launch (the training DAG builds the same list from the family's spec, ``models/<family>.yaml``):
    spark-submit --master 'local[*]' spark_jobs/train.py --family als --lake .recflow/lake \
        --train-start 2026-11-01 --holdout-start 2026-11-06 --end 2026-11-08 \
        --output-dir .recflow/runs/als --run-id manual-1 --register

``--family`` (als, hybrid, ncf, popularity, sequence) chooses the spec and the fit
(``recflow.training.fitters.FITTERS``); ``--help`` lists the other options. Exit status 1 with one last
line ``train_<family> failed: <Error>: <message>`` for bad data or a bad spec; a failed run never leaves a
partial candidate in ``--output-dir``. The work is :func:`recflow.training.entry.main`.
"""

from recflow.training.entry import main

if __name__ == "__main__":
    main()
