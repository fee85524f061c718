"""The peer side of `temper-bench vectors`: builds an hnswlib index over the vectors in a file
and times single-threaded top-k queries at each ef, printing one JSON object.

usage: hnswlib_search.py VECTORS QUERIES DIM M EF_CONSTRUCTION K EF[,EF…]
VECTORS and QUERIES hold little-endian float32 rows of DIM values, unit length.
"""
import importlib.metadata
import json
import sys
import time

import hnswlib
import numpy as np

vectors_path, queries_path = sys.argv[1], sys.argv[2]
dim, m, ef_construction, k = map(int, sys.argv[3:7])
efs = [int(e) for e in sys.argv[7].split(",")]
vectors = np.fromfile(vectors_path, dtype="<f4").reshape(-1, dim)
queries = np.fromfile(queries_path, dtype="<f4").reshape(-1, dim)

index = hnswlib.Index(space="ip", dim=dim)
index.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction, random_seed=100)
index.set_num_threads(1)
start = time.perf_counter()
index.add_items(vectors, np.arange(len(vectors)))
build_seconds = time.perf_counter() - start

runs = []
for ef in efs:
    index.set_ef(ef)
    found = []
    start = time.perf_counter()
    for q in queries:
        labels, _ = index.knn_query(q, k=k)
        found.append(labels[0].tolist())
    runs.append({"ef": ef, "seconds": time.perf_counter() - start, "ids": found})
print(json.dumps({"hnswlib": importlib.metadata.version("hnswlib"), "build_seconds": build_seconds, "runs": runs}))
