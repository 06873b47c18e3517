"""Interaction data: the contract, sources (synthetic, MovieLens, purchase card) and landing-file readers.

Kept light on purpose: importing ``recflow.data`` must not pull in pandas or pyarrow, because DAG files
import the package tree at parse time. Import the submodules (``recflow.data.synthetic`` ...) inside tasks.
"""
