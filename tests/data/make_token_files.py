"""Writes the token files of the batch tests (tests/data/tokens/): a batch of three sequences of the
bundled demo model (rows of tests/data/reference/mamba_demo/tokens_0.npy), and the malformed files
that mixlens-attn and python -m mixlens must refuse. Run from the repository root; the same bytes on
every run."""

import pathlib

import numpy as np

root = pathlib.Path(__file__).resolve().parent
out = root / "tokens"
out.mkdir(exist_ok=True)
t = np.load(root / "reference" / "mamba_demo" / "tokens_0.npy").astype(np.int64)
np.save(out / "batch_3x20.npy", np.stack([t[:20], t[5:25], t[10:30]]))     # B = 3, L = 20, int64
np.save(out / "one_row.npy", t[None, :20].astype(np.int32))                # (1, 20): one sequence
np.save(out / "zero_rows.npy", np.zeros((0, 5), dtype=np.int64))           # no sequence
np.save(out / "no_tokens.npy", np.zeros((3, 0), dtype=np.int64))           # sequences without tokens
np.save(out / "float.npy", t[None, :4].astype(np.float32))                 # wrong dtype
np.save(out / "three_d.npy", np.zeros((2, 3, 4), dtype=np.int64))          # wrong rank
bad = np.stack([t[:20], t[5:25], t[10:30]])
bad[2, 7] = 300                                                            # outside the demo's vocabulary [0, 256)
np.save(out / "batch_bad_token.npy", bad)
np.save(out / "ragged.npy", np.array([t[:3], t[:5]], dtype=object), allow_pickle=True)  # different lengths
