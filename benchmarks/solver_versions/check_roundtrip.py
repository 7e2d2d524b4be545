"""Check that reading each MPS back gives exactly the arrays exactcomp passes to HiGHS (saved .npz)."""
import sys, glob, numpy as np, highspy, scipy.sparse as sp
for path in sorted(glob.glob(sys.argv[1] + "/*.mps")):
    d = np.load(path[:-4] + ".npz")
    h = highspy.Highs(); h.setOptionValue("output_flag", False); h.readModel(path)
    lp = h.getLp()
    A = sp.csc_matrix((np.array(lp.a_matrix_.value_), np.array(lp.a_matrix_.index_), np.array(lp.a_matrix_.start_)),
                      shape=(lp.num_row_, lp.num_col_)).tocsr()
    A0 = sp.csr_matrix((d["A_data"], d["A_indices"], d["A_indptr"]), shape=tuple(d["A_shape"]))
    diffs = {
        "A": abs(A - A0).max() if A.nnz or A0.nnz else 0.0,
        "c": np.max(np.abs(np.array(lp.col_cost_) - d["c"])),
        "rl": np.max(np.abs(np.nan_to_num(np.array(lp.row_lower_) - d["row_lower"]))),
        "ru": np.max(np.abs(np.nan_to_num(np.array(lp.row_upper_) - d["row_upper"]))),
        "cl": np.max(np.abs(np.array(lp.col_lower_) - d["col_lower"])),
        "cu": np.max(np.abs(np.array(lp.col_upper_) - d["col_upper"])),
    }
    integ = np.array([int(v) for v in lp.integrality_]) == 1
    print(path.split("/")[-1], {k: float(v) for k, v in diffs.items()}, "nnz", A.nnz, A0.nnz,
          "integrality same:", bool((integ == d["integrality"]).all()), "sense", lp.sense_)
