"""Circuit discovery by node pruning (Gao et al. 2025, "Weight-sparse transformers have
interpretable circuits", section 2.2 and appendix A.5), writing viz_data.pt files.

Run `python -m pruning --help`. The steps are listed in `pruning.pipeline`; the
file format in `pruning.vizdata`.
"""
