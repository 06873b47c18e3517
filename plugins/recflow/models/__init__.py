"""Model families: each one trains from a pandas/Spark frame and saves an artifact folder that
:func:`recflow.models.artifact.load_recommender` turns back into a :class:`Recommender`."""
