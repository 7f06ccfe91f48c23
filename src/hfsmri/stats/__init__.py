"""hfsmri.stats — the statistics engine every group analysis goes through.

Modules: :mod:`design` (design matrices from the Study), :mod:`glm` (vectorised OLS and
``permuted_glm``: Freedman–Lane / sign flipping, max-statistic FWE, FDR), :mod:`tfce` (fast exact
TFCE), :mod:`permutation` (permutation sets, exact enumeration, exchangeability blocks, nilearn's
stream), :mod:`clusters` (cluster tables with atlas labels), :mod:`fdr`, :mod:`roi`,
:mod:`correlation`, :mod:`voxelwise` (group inference, no I/O; the group runner writes).
See docs/statistics.md.
"""
