"""The evaluation's defaults, stated once: the metric modules take theirs from here, and so does
`EvaluationSettings`, from which `evaluate`'s keywords and `examples/evaluate.py`'s flags both come. It imports
nothing, so that the settings (and anything that reads a report) need no metric module, no network and no torch."""

from __future__ import annotations

DEFAULT_DINOV2 = "facebook/dinov2-large"  # ViT-L/14, the FD_DINOv2 of Stein et al.
DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"  # ViT-L/14 at 336 px, the CMMD of Jayasumana et al.
IS_SPLITS = 10  # the Inception Score's mean ± std over splits, as improved-gan's code reports it
KID_SUBSETS = 100  # KID's mean ± std over random subsets, as Bińkowski et al.'s code and torch-fidelity
KID_SUBSET_SIZE = 1000
NEIGHBOURHOOD = 3  # k of precision/recall's k-NN radii, as improved-diffusion's evaluator and the paper's default
# The sampling network's numerics, as `ddpm_hf.fastpath.Precision` spells them (a test keeps the two equal): not
# imported from there, because fastpath loads torch.
PRECISIONS = ("auto", "fp32", "bf16")
