"""The thin Airflow-facing layer: the only part of recflow that imports ``airflow``.

DAG files import from here, and these modules import the core lazily inside task callables, so
parsing a DAG stays cheap (no pandas, Spark, TensorFlow or boto3 at parse time).
"""
