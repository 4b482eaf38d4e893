import pandas as pd

from deffiller.config import load_profile
from deffiller.reporting.outputs import Outputs
from deffiller.reporting.paper import beside_paper, paper_table
from deffiller.reporting.report import build_report


def test_paper_tables_are_complete():
    for i in range(1, 9):
        table = paper_table(f"table{i}")
        assert len(table) >= 1 and len(table.columns) >= 4
    fid = paper_table("table1")
    assert fid.loc[fid.strategy == "gligen", "AVG"].item() == 54.40
    assert paper_table("table8").shape == (12, 6)


def test_beside_paper_joins_on_keys():
    ours = pd.DataFrame({"guidance": [3], "inclusion": [1.0], "patches": [2.0], "scratches": [3.0], "AVG": [2.0]})
    merged = beside_paper(ours, "table2", ["guidance"])
    assert merged.loc[0, "inclusion_paper"] == 47.03 and merged.loc[0, "inclusion_ours"] == 1.0


def test_outputs_and_report(tmp_path):
    profile = load_profile("tiny", overrides={"paths.figures": str(tmp_path)})
    outputs = Outputs(profile, "07_quality", data={"root": "x", "synthetic": True}, banner="STAND-IN DATA")
    outputs.table("table3", pd.DataFrame({"method": ["DefFiller"], "inclusion": [10.5], "patches": [1.0],
                                          "scratches": [2.0], "AVG": [4.5]}), "FID")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    outputs.figure("fig6", fig)
    outputs.finish()
    assert "STAND-IN DATA" in (tmp_path / "table3.md").read_text()
    md, html = build_report(profile)
    text = md.read_text()
    assert "> **STAND-IN DATA**" in text and "10.5" in text and "106.22" in text  # ours beside the paper's AdaBLDM row
    assert "![" in text and "fig6.png" in text and "07_quality" in text
    assert "<table>" in html.read_text()
