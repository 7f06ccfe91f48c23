"""Multi-site harmonisation (ComBat with empirical Bayes). See docs/harmonisation.md."""
from .combat import ComBat, combat
from .study import harmonize_for_study, study_sites_covariates

__all__ = ["ComBat", "combat", "harmonize_for_study", "study_sites_covariates"]
