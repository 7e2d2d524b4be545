"""``exactcomp stabilize`` (issue 21, in progress): fine-tune a trained model so that more of its neurons are
provably stable over a domain, at a stated accuracy cost. So far: the ONNX graph as a trainable torch
function and its new weights written back into the same graph (:mod:`exactcomp.finetune.graph`)."""
