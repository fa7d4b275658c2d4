"""advrec.detection: fake-profile detection and data-level defences. A data-level layer: it reads
``Interactions``, never models (``docs/detection.md``).

- ``features``: the profile features of shilling detection (RDMA, WDMA, WDA, LengthVar, DegSim,
  MeanVar, FMV, FMTD, TMF), ``profile_features(train) -> ProfileFeatures`` (unpacks as
  ``names, matrix``);
- ``detectors``: ``SupervisedDetector`` (an SVM or a random forest over the profile features,
  scikit-learn, the ``detect`` extra), ``DegreeSAD`` (the same over item-degree features),
  ``PCASelectUsers`` (unsupervised, Mehta & Nejdl 2009), ``AnyOf`` (the union of several
  detectors' suspects), ``TargetFocus`` (a detector's suspects kept where they push the item
  its suspects push most); each scores every user and decides at a stated threshold;
- ``evaluation``: ``detection_metrics`` (precision, recall, F1, AUC, ROC points) and
  ``leave_one_type_out`` (train on some attack types, test on the one left out, never on a
  scored fake);
- ``defences``: ``filter_users`` (the log without the suspects' rows, reported). The
  training-time defence, trimmed ALS, is ``advrec.training.TrimmedExplicitMF``.
"""
from __future__ import annotations

from .defences import FilterResult, filter_users
from .detectors import (DEGREE_FEATURES, MODELS, AnyOf, DegreeSAD, PCASelectUsers, SupervisedDetector, TargetFocus,
                        degree_features)
from .evaluation import AttackFactory, detection_metrics, leave_one_type_out
from .features import (DEFAULT_K, DEFAULT_MIN_OVERLAP, FEATURES, RATING_FEATURES, ProfileFeatures,
                       profile_features)

__all__ = ["FEATURES", "RATING_FEATURES", "DEFAULT_K", "DEFAULT_MIN_OVERLAP", "ProfileFeatures",
           "profile_features", "SupervisedDetector", "DegreeSAD", "PCASelectUsers", "AnyOf", "TargetFocus",
           "degree_features",
           "DEGREE_FEATURES", "MODELS", "detection_metrics", "leave_one_type_out", "AttackFactory",
           "FilterResult", "filter_users"]
