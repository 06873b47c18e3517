# recflow images for docker-compose.yml: the official Airflow and Spark images, extended with the project
# installed from uv.lock (same Python, same packages, same path /opt/recflow/.venv on every node), Java
# for spark-submit, and the s3a jars resolved by Maven from the same POM `recflow` uses locally.
#   docker compose build        (targets: airflow, spark)

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG SPARK_IMAGE=apache/spark:4.2.0-scala2.13-java17-python3-ubuntu
ARG MAVEN_IMAGE=maven:3.9.11-eclipse-temurin-17
ARG UV_VERSION=0.13.8

# --- the s3a jar set (hadoop-aws matching pyspark's Hadoop 3.5.0, and its AWS SDK bundle) -----------------
FROM ${MAVEN_IMAGE} AS jars
COPY plugins/recflow/services/poms/spark-s3a.xml /build/spark-s3a.xml
RUN mvn -q -B -f /build/spark-s3a.xml org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DoutputDirectory=/opt/recflow/state/jars/spark-s3a \
 && sha256sum /build/spark-s3a.xml | cut -d' ' -f1 > /opt/recflow/state/jars/spark-s3a/.resolved

# --- Airflow: api-server, scheduler, dag-processor, triggerer, the init service and the scorer ------------
FROM ${AIRFLOW_IMAGE} AS airflow
ARG UV_VERSION
USER root
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
USER airflow
WORKDIR /opt/recflow
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
COPY --chown=airflow:root pyproject.toml uv.lock README.md ./
COPY --chown=airflow:root plugins ./plugins
RUN python -m uv sync --frozen --no-dev --compile-bytecode --python "$(command -v python)"
COPY --chown=airflow:root dags ./dags
COPY --chown=airflow:root spark_jobs ./spark_jobs
COPY --chown=airflow:root models ./models
COPY --chown=airflow:root expectations ./expectations
COPY --from=jars --chown=airflow:root /opt/recflow/state/jars /opt/recflow/state/jars
ENV PATH=/opt/recflow/.venv/bin:${PATH} \
    RECFLOW_ROOT=/opt/recflow RECFLOW_STATE=/opt/recflow/state \
    PYSPARK_PYTHON=/opt/recflow/.venv/bin/python PYSPARK_DRIVER_PYTHON=/opt/recflow/.venv/bin/python

# --- Spark master and workers: the JVM daemons from apache/spark, executors' Python from uv.lock ----------
FROM ${SPARK_IMAGE} AS spark
ARG UV_VERSION
USER root
WORKDIR /opt/recflow
RUN python3 -m pip install --no-cache-dir "uv==${UV_VERSION}"
COPY pyproject.toml uv.lock README.md ./
COPY plugins ./plugins
# The executors must run the driver's Python minor version (3.11): uv installs it from the lock's range.
# Bytecode is compiled in the image, so no Python worker compiles numpy/pandas/pyarrow when it starts.
RUN python3 -m uv sync --frozen --no-dev --compile-bytecode --python 3.11 && chown -R spark:spark /opt/recflow
COPY --from=jars --chown=spark:spark /opt/recflow/state/jars /opt/recflow/state/jars
USER spark
ENV PYSPARK_PYTHON=/opt/recflow/.venv/bin/python
