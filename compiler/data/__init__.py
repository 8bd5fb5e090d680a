"""Real labelled data for xrec's accuracy reports: MovieLens-100K as a CTR task.

    from xrec import data
    ml = data.load()                              # train / validation / test by time
    model = data.trained("deepfm")                # a zoo DeepFM sized for this data, trained (cached)
    cm = xrec.compile(model, data.example_inputs(model), quantize="int8")
    cm.manifest["compression"]                    # AUC / log-loss on the real test split

A model built here carries ``model.xrec_data`` (a :class:`LabelledData`); xrec's compression path
then measures on the real labels instead of synthetic ones.
"""
from .movielens import (DENSE_FEATURES, FEATURES, HIST_LEN, ITEM_FEATURES, LABEL_MIN_RATING, SPLIT_FRACTIONS,
                        USER_FEATURES, DataMissingError, MovieLens100K, Split, data_dir, load)

__all__ = ["DENSE_FEATURES", "FEATURES", "HIST_LEN", "ITEM_FEATURES", "LABEL_MIN_RATING", "SPLIT_FRACTIONS",
           "USER_FEATURES", "DataMissingError", "MovieLens100K", "Split", "data_dir", "load"]
from .models import MODELS, LabelledData, TrainConfig, build, checkpoint_path, evaluate, example_inputs, spec_for, \
    train, trained

__all__ += ["MODELS", "LabelledData", "TrainConfig", "build", "checkpoint_path", "evaluate", "example_inputs",
            "spec_for", "train", "trained"]
