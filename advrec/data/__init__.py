"""advrec.data: interaction logs, dataset loading, readers, preprocessing, splits, and the injection
of fake users (``poison``)."""
from __future__ import annotations

from . import readers
from ._parse import FormatError
from .content import content_extra_available, item_texts, load_item_features, ml100k_text_features
from .datasets import (FORMATS, Dataset, DatasetInfo, available, catalog, guess_format, info, load,
                       load_file, parse_name, register)
from .fields import Field, FieldEncoder, FMData, InstanceMatrix, Ragged, libfm_fm, ml100k_fm
from .interactions import Interactions, exclusion_csr
from .poison import FAKE_PREFIX, fake_user_ids, fake_users, inject
from .preprocess import binarize, deduplicate, implicit, k_core, remap
from .readers import (LibFMData, read_amazon, read_csv, read_lastfm, read_libfm, read_ml1m,
                      read_ml100k)
from .sequences import PAD, TrainingSequences, check_sequences, training_sequences, user_sequences
from .synthetic import synthetic
from .splits import ColdSplit, Split, cold_item_split, leave_one_out, ratio_split

# sampling (BPR triples) lives in advrec/data/sampling.py, owned elsewhere

__all__ = [
    "Interactions", "Dataset", "Split", "load", "available", "load_file", "FORMATS", "guess_format", "register",
    "readers", "DatasetInfo", "catalog", "info", "parse_name", "synthetic",
    "read_ml100k", "read_ml1m", "read_lastfm", "read_libfm", "read_amazon", "read_csv",
    "LibFMData", "FormatError", "binarize", "implicit", "k_core", "remap", "deduplicate",
    "leave_one_out", "ratio_split", "cold_item_split", "ColdSplit", "exclusion_csr",
    "Field", "FieldEncoder", "FMData", "InstanceMatrix", "Ragged", "libfm_fm", "ml100k_fm",
    "load_item_features", "ml100k_text_features", "item_texts", "content_extra_available",
    "PAD", "user_sequences", "training_sequences", "TrainingSequences", "check_sequences",
    "inject", "fake_users", "fake_user_ids", "FAKE_PREFIX",
]
