"""advrec.distributed: FM certification batches on a Ray cluster (the ``distributed`` extra).

``connect`` joins (or starts) a cluster; ``certify_parquet`` certifies a Parquet file of
instances shard by shard into an output directory (resumable, retried on worker loss);
``certify_arrays`` does the same for a CSR in memory. Ray and pyarrow are imported only when
used; without them the error names the extra (``pip install 'advrec[distributed]'``).
"""
from .model import ModelPayload
from .parquet import InstanceFile, read_results, write_instances
from .runner import RunStats, certify_arrays, certify_parquet, connect

__all__ = ["ModelPayload", "InstanceFile", "read_results", "write_instances", "RunStats", "certify_arrays",
           "certify_parquet", "connect"]
