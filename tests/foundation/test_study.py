"""Study model: participants.tsv + study.yaml validation, each fault named."""
from __future__ import annotations

import pytest

from hfsmri.errors import StudyError
from hfsmri.study import Study


def write(tmp_path, tsv: str, yaml_text: str | None = None):
    bids = tmp_path / "bids"
    bids.mkdir(exist_ok=True)
    (bids / "participants.tsv").write_text(tsv)
    y = None
    if yaml_text is not None:
        y = tmp_path / "study.yaml"
        y.write_text(yaml_text)
    return bids, y


TSV = ("participant_id\tgroup\tage\tsex\taffected_side\tseverity\tsite\n"
       "sub-01\tHFS\t50\tF\tL\t2\tA\n"
       "sub-02\tHFS\t61\tM\tR\t3\tB\n"
       "sub-03\tHC\t48\tF\tn/a\t0\tA\n"
       "sub-04\tHC\t55\tM\tn/a\t0\tB\n")


def test_valid_study_and_types(tmp_path):
    bids, y = write(tmp_path, TSV, "group_column: group\ncovariates: [age, sex]\nclinical: [severity]\n"
                                   "flip_to: R\nsite_column: site\nanalyses: {reho: {neighborhood: 19}}\n")
    s = Study.from_bids(bids, y)
    assert s.labels == ["01", "02", "03", "04"]
    assert s.covariate_types == {"age": "continuous", "sex": "categorical"}
    assert s.group_of("sub-01") == "patient" and s.group_of("03") == "control"
    assert s.flipped("01") and not s.flipped("02") and not s.flipped("03")
    assert s.analyses == {"reho": {"neighborhood": 19, "fwhm": 4.0}}
    assert s.stats["n_perm"] == 5000 and s.stats["alpha"] == 0.05
    out = s.write_resolved(tmp_path / "out")
    assert "neighborhood: 19" in out.read_text()


def test_defaults_without_yaml(tmp_path):
    bids, _ = write(tmp_path, TSV)
    s = Study.from_bids(bids, None)
    assert "vbm" in s.analyses and "graph" in s.analyses


@pytest.mark.parametrize("yaml_text, needle", [
    ("group_column: grp\n", "'grp' is not in participants.tsv"),
    ("group_column: group\ncovariates: [agee]\n", "did you mean 'age'"),
    ("group_column: group\ncovarites: [age]\n", "unknown key 'covarites'"),
    ("group_column: group\nanalyses: {rehoo: {}}\n", "unknown entry 'rehoo'"),
    ("group_column: group\nanalyses: {reho: {neighbourhood: 7}}\n", "unknown parameter 'neighbourhood'"),
    ("group_column: group\nanalyses: false\n", "list of analysis names"),
    ("group_column: group\nanalyses: [[]]\n", "must hold analysis names"),
    ("group_column: group\nstats: {alpha: 2}\n", "stats.alpha"),
    ("group_column: group\nflip_to: X\n", "flip_to"),
    ("group_column: group\ngroups: {patient: HFS}\n", "groups"),
])
def test_config_errors_name_field(tmp_path, yaml_text, needle):
    bids, y = write(tmp_path, TSV, yaml_text)
    with pytest.raises(StudyError) as exc:
        Study.from_bids(bids, y)
    assert needle in str(exc.value)
    assert "study.yaml" in str(exc.value)


def test_group_value_maps_to_nothing(tmp_path):
    bids, y = write(tmp_path, TSV.replace("sub-04\tHC", "sub-04\tPD"), "group_column: group\n")
    with pytest.raises(StudyError, match=r"sub-04=PD"):
        Study.from_bids(bids, y)


def test_covariate_missing_values_named(tmp_path):
    bids, y = write(tmp_path, TSV.replace("\t61\t", "\tn/a\t"), "group_column: group\ncovariates: [age]\n")
    with pytest.raises(StudyError, match=r"missing values for: sub-02"):
        Study.from_bids(bids, y)


def test_constant_covariate(tmp_path):
    tsv = TSV.replace("\tA\n", "\tX\n").replace("\tB\n", "\tX\n")
    bids, y = write(tmp_path, tsv, "group_column: group\ncovariates: [site]\n")
    with pytest.raises(StudyError, match="constant"):
        Study.from_bids(bids, y)


def test_text_in_numeric_covariate(tmp_path):
    bids, y = write(tmp_path, TSV.replace("\t61\t", "\tsixty\t"),
                    "group_column: group\ncovariates: [age]\ncovariate_types: {age: continuous}\n")
    with pytest.raises(StudyError, match=r"sub-02='sixty'"):
        Study.from_bids(bids, y)


def test_too_few_in_group(tmp_path):
    tsv = "\n".join(TSV.splitlines()[:4]) + "\n"  # only one control
    bids, y = write(tmp_path, tsv, "group_column: group\n")
    with pytest.raises(StudyError, match="at least 2"):
        Study.from_bids(bids, y)


def test_sessions_missing_on_disk(tmp_path):
    bids, y = write(tmp_path, TSV, "group_column: group\nsessions: [pre, post]\n")
    for s in ("01", "02", "03", "04"):
        (bids / f"sub-{s}" / "ses-pre").mkdir(parents=True)
        if s != "03":
            (bids / f"sub-{s}" / "ses-post").mkdir(parents=True)
    with pytest.raises(StudyError, match=r"sub-03/ses-post"):
        Study.from_bids(bids, y)


def test_bad_affected_side(tmp_path):
    bids, y = write(tmp_path, TSV.replace("\tL\t", "\tleft\t"), "group_column: group\n")
    with pytest.raises(StudyError, match=r"sub-01=LEFT"):
        Study.from_bids(bids, y)


def test_duplicate_and_path_ids(tmp_path):
    bids, y = write(tmp_path, TSV + "sub-01\tHC\t40\tF\tn/a\t0\tA\n", "group_column: group\n")
    with pytest.raises(StudyError, match="duplicated"):
        Study.from_bids(bids, y)
    bids, y = write(tmp_path, TSV.replace("sub-04", "sub-../../x"), "group_column: group\n")
    with pytest.raises(StudyError, match="participant_id"):
        Study.from_bids(bids, y)


def test_missing_group_column(tmp_path):
    bids, y = write(tmp_path, TSV.replace("\tgroup\t", "\tcohort\t"), "group_column: group\n")
    with pytest.raises(StudyError, match="'group' is not in participants.tsv"):
        Study.from_bids(bids, y)


def test_exclude(tmp_path):
    tsv = TSV + "sub-05\tHC\t70\tF\tn/a\t0\tA\n"
    bids, y = write(tmp_path, tsv, "group_column: group\nexclude: [sub-05]\n")
    s = Study.from_bids(bids, y)
    assert "05" not in s.labels and s.excluded == {"05": "excluded in study.yaml"}


def test_participant_level_runs_on_any_number_of_subjects(tmp_path):
    """One subject, incomplete groups, a covariate not yet known for everyone: fine for the
    participant level; the group level names what is missing (issue 19, item 7)."""
    one = "participant_id\tgroup\tage\tsex\taffected_side\tsite\nsub-01\tHFS\t50\tF\tL\tA\n"
    bids, y = write(tmp_path, one, "group_column: group\ncovariates: [age, sex]\nflip_to: R\nsite_column: site\n"
                                   "harmonize: combat\n")
    s = Study.from_bids(bids, y, level="participant")
    assert s.labels == ["01"] and s.flipped("01")
    both = r"patient \('HFS'\) has 1 participant\(s\); group control \('HC'\) has 0 participant\(s\); at least 2"
    with pytest.raises(StudyError, match=both + ".*group level"):
        Study.from_bids(bids, y)
    three = TSV.replace("sub-04\tHC\t55", "sub-04\tHFS\t55").replace("sub-04\tHFS\t55\tM\tn/a", "sub-04\tHFS\t55\tM\tL")
    three = three.replace("sub-03\tHC\t48", "sub-03\tHC\tn/a")
    bids, y = write(tmp_path, three, "group_column: group\ncovariates: [age]\n")
    assert Study.from_bids(bids, y, level="participant").subjects_in("control") == ["03"]
    with pytest.raises(StudyError, match="at least 2"):
        Study.from_bids(bids, y, level="group")
    s = Study.from_bids(bids, y, level="participant")
    with pytest.raises(StudyError, match="at least 2"):
        s.check_group_level()
