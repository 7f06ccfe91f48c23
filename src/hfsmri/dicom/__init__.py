"""DICOM -> BIDS import (``hfsmri import``) with dcm2niix.

Modules: :mod:`.scan` (read headers, group series, completeness checks), :mod:`.heuristic`
(YAML rules: series -> BIDS datatype/suffix/entities, or skip with a reason; the default rules are
``default_heuristic.yaml``), :mod:`.convert` (the dcm2niix binary and one conversion per series),
:mod:`.bidsout` (BIDS names, runs, participants.tsv, dataset_description.json, commit, record),
:mod:`.importer` (the command). See ``docs/import.md``.
"""
from .heuristic import HeuristicError, load_heuristic
from .importer import ImportResult, import_dicom
from .scan import DicomFolderError, scan_folder

__all__ = ["import_dicom", "ImportResult", "load_heuristic", "scan_folder", "DicomFolderError", "HeuristicError"]
