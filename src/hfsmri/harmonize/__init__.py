"""Multi-site harmonisation (ComBat with empirical Bayes). See docs/harmonisation.md."""
from .apply import harmonize_for_design, protected_basis
from .combat import ComBat, combat
from .study import harmonize_for_study, study_sites_covariates

__all__ = ["ComBat", "combat", "harmonize_for_design", "harmonize_for_study", "protected_basis",
           "study_sites_covariates"]
