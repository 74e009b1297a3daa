"""The Plans page's candidate picker (issue 13): an ambiguous ablation shows its candidate readings
as buttons; one click picks a reading, which the table shows and the saved plan keeps."""

from __future__ import annotations

from zolab.db.models import Plan
from zolab.db.session import session_scope
from zolab.ui.candidates import button_key

PLAN = b"""\
zolab: 1
name: pick-me
baseline: {model: tiny-opt, lr: 1.0e-3, steps: 5}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - name: eps
    ablated_part: perturbation scale
    action: REPLACE
    replacement: [0.1]
  - name: sizes
    ablated_part: step size and perturbation size
    action: REPLACE
    replacement: [0.01]
"""


def _table(at):
    return next(df.value for df in at.dataframe if "explanation" in df.value.columns)


def test_one_click_picks_a_candidate_and_the_saved_plan_keeps_it(page, sqlite_url):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("pick.yaml", PLAN).run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(_table(at)["status"]) == ["resolved", "ambiguous"]
    keys = {b.key for b in at.button}
    assert {button_key(1, "eps"), button_key(1, "lr")} <= keys  # both readings offered
    assert button_key(0, "eps") not in keys                      # a resolved ablation offers none
    assert any("stored and not run" in w.value for w in at.warning)

    at.button(key=button_key(1, "eps")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = _table(at)
    assert (table["component"].iloc[1], table["status"].iloc[1], bool(table["overridden"].iloc[1])) == (
        "eps", "resolved", True)
    assert "eps=0.01" in table["variants"].iloc[1]
    assert not any(b.key and b.key.startswith("pick_") for b in at.button)  # nothing left to pick

    at.button(key="save_plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(sqlite_url) as s:
        plan = s.query(Plan).one()
        row = sorted(plan.ablations, key=lambda a: a.position)[1]
        assert (row.component, row.status, row.overridden, row.candidates) == ("eps", "resolved", True, [])


def test_an_unpicked_plan_saves_with_the_ambiguous_ablation_not_run(page, sqlite_url):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("pick.yaml", PLAN).run()
    at.button(key="save_plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(sqlite_url) as s:
        plan = s.query(Plan).one()
        rows = sorted(plan.ablations, key=lambda a: a.position)
        assert [r.status for r in rows] == ["resolved", "ambiguous"]
        assert {c["component"] for c in rows[1].candidates} >= {"eps", "lr"}
        assert all("sizes" not in v.ablations for v in plan.variants)


RESPONSE = b"""<discussion>
Two ablations of MeZO.
</discussion>
<predictions>
{"name": "eps", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": [0.01], "metrics": ["accuracy"]}
{"name": "sizes", "ablated_part": "step size and perturbation size", "action": "REPLACE", "replacement": [0.01], "metrics": ["accuracy"]}
</predictions>
"""


def test_a_raw_planner_response_uploads_and_offers_its_candidates(page):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("response.txt", RESPONSE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("ablationbench plan" in s.value for s in at.success)
    assert list(_table(at)["status"]) == ["resolved", "ambiguous"]
    assert button_key(1, "lr") in {b.key for b in at.button}


def test_the_upload_preview_warns_about_a_metric_zolab_does_not_measure(page, sqlite_url):
    """A free-form metric never refuses the plan (the lead's probe of issue 13): "peak GPU memory" is
    read as peak_memory, "perplexity" is kept and the preview says that zolab does not measure it."""
    text = PLAN.replace(b"seeds: [1]\n", b"seeds: [1]\nmetrics: [test accuracy, peak GPU memory, perplexity]\n")
    at = page("plans")
    at.file_uploader(key="plan_file").upload("metrics.yaml", text).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert any("zolab does not measure perplexity" in w.value for w in at.warning)
    at.button(key="save_plan").click().run()
    with session_scope(sqlite_url) as s:
        assert s.query(Plan).one().plan_json["metrics"] == ["accuracy", "peak_memory", "perplexity"]
