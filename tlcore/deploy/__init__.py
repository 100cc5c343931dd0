"""deploy: a trained run as files that run elsewhere.

formats  .keras, TFLite, SavedModel    card  the model card, labels.txt and predict.py
export   a run's exports, kept in its folder
lite_copy  a pretrained classifier's LiteRT copy, which Predict answers with before TensorFlow loads
"""
