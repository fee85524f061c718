"""The peer side of `temper-bench retrieval`: times sentence-transformers (PyTorch, CPU) encoding
the texts given as a JSON array on stdin, and prints one JSON object.

usage: st_encode.py MODEL_DIR THREADS MAX_SEQ_LENGTH BATCH_SIZE < texts.json
"""
import json
import sys
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

model_dir, threads, max_seq_length, batch_size = sys.argv[1], *map(int, sys.argv[2:5])
torch.set_num_threads(threads)
texts = json.load(sys.stdin)
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = max_seq_length
model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up, as on the Rust side
start = time.perf_counter()
model.encode(texts, batch_size=batch_size)
seconds = time.perf_counter() - start
print(json.dumps({
    "texts": len(texts),
    "seconds": seconds,
    "torch": torch.__version__,
    "sentence_transformers": sentence_transformers.__version__,
}))
