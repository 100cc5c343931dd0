"""deploy: a trained run as files that run elsewhere.

formats  .keras, TFLite, SavedModel    card  the model card, labels.txt and predict.py
export   a run's exports, kept in its folder
"""
