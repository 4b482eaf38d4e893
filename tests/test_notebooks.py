"""The notebooks: thin, parameterised, committed without outputs, and the whole chain runs under `tiny`."""
import json
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from deffiller.config import REPO_ROOT, configs_dir
from deffiller.reporting import runner

NOTEBOOKS = runner.discover()
EXPECTED_OUTPUTS = {  # notebook -> files it must write under figures/<profile>/
    "01_data": ["fig3.png", "fig3.pdf", "dataset_stats.csv", "dataset_stats.md", "splits.csv", "provenance_01_data.json"],
    "02_mask_ddpm": ["table6.csv", "table6.md", "fig8.png", "fig8.pdf", "mask_quality.csv"],
    "03_priors": ["priors.csv", "provenance_03_priors.json"],
    "04_training_strategies": ["table1.csv", "table1.md", "fid_seeds.csv", "fig4.png", "fig4.pdf"],
    "05_guidance": ["table2.csv", "table2.md", "fig5.png", "fig5.pdf"],
    "06_baselines": ["baselines.csv", "provenance_06_baselines.json"],
    "07_generation_quality": ["table3.csv", "table7.csv", "fig6.png", "fig9.png", "fig10.png", "fig10.pdf",
                              "samples_vs_real.png"],
    "08_substitution": ["table4.csv", "table5.csv", "table5.md", "fig7.png", "fig7.pdf"],
    "09_expansion": ["table8.csv", "table8.md", "table8_leakfree.csv", "table8_leakfree.md"],
    "10_report": ["report.md", "report.html"],
}


def test_notebooks_exist_and_are_numbered():
    assert NOTEBOOKS, "no notebooks found"
    numbers = [runner.notebook_number(p) for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers))
    assert {p.stem for p in NOTEBOOKS} <= set(EXPECTED_OUTPUTS), "declare every notebook's outputs in EXPECTED_OUTPUTS"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_parameters(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: strip outputs"
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
    params = papermill.inspect_notebook(str(path))
    assert "PROFILE" in params and params["PROFILE"]["inferred_type_name"] == "str"
    assert "OVERRIDES" in params, f"{path.name}: take OVERRIDES (settings changed for one run) as a parameter"
    assert all(p["help"] for p in params.values()), f"{path.name}: comment every parameter"
    assert len(code) <= 12, f"{path.name}: keep notebooks thin, logic belongs in the package"


@pytest.fixture
def isolated_tiny(tmp_path, monkeypatch, dataset_or_synthetic):
    """deffiller/configs/ copied with tiny's outputs and figures redirected into tmp_path, and the real data beside
    (a synthetic dataset where ../shared is absent)."""
    configs = tmp_path / "configs"
    shutil.copytree(configs_dir(), configs)
    tiny = yaml.safe_load((configs / "tiny.yaml").read_text())
    tiny["paths"].update(outputs=str(tmp_path / "outputs"), figures=str(tmp_path / "figures"), data_root=str(tmp_path / "data"),
                         weights=str(tmp_path / "weights"))
    (configs / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    monkeypatch.setenv("DEFFILLER_CONFIGS", str(configs))
    monkeypatch.setenv("DEFFILLER_DATASET", str(dataset_or_synthetic[0]))
    return tmp_path


def test_whole_chain_under_tiny_then_skips(isolated_tiny, dataset_or_synthetic):
    results = runner.run_all("tiny")
    failed = [r for r in results if r.status != "ran"]
    assert not failed, runner.summary(results)
    for notebook in (p.stem for p in NOTEBOOKS):
        for name in EXPECTED_OUTPUTS[notebook]:
            assert (isolated_tiny / "figures" / name).is_file(), f"{notebook} did not write {name}"
    provenance = json.loads((isolated_tiny / "figures" / "provenance_01_data.json").read_text())
    assert provenance["profile"] == "tiny" and provenance["data"]["root"] == str(dataset_or_synthetic[0])
    again = runner.run_all("tiny")
    assert {r.status for r in again} == {"skipped"}


def test_failure_names_the_cell_and_keep_going(tmp_path, monkeypatch, isolated_tiny):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    for number, body in (("01", "x = 1"), ("02", "raise ValueError('broken on purpose')"), ("03", "y = 2")):
        cells = [nbformat.v4.new_code_cell('PROFILE: str = "tiny"  # profile'), nbformat.v4.new_code_cell(body)]
        cells[0].metadata["tags"] = ["parameters"]
        nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
                       notebooks / f"{number}_t.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS", notebooks)
    stop = runner.run_all("tiny", notebooks_dir=notebooks)
    assert [r.status for r in stop] == ["ran", "failed", "not run"]
    assert "cell 2" in stop[1].detail and "broken on purpose" in stop[1].detail
    going = runner.run_all("tiny", notebooks_dir=notebooks, keep_going=True)
    assert [r.status for r in going] == ["skipped", "failed", "ran"]


def test_overrides_reach_the_notebooks_and_their_own_folders(tmp_path, monkeypatch):
    """`run_all.sh --set` hands the settings to every notebook as OVERRIDES; the run writes to folders of its own."""
    configs = tmp_path / "configs"
    shutil.copytree(configs_dir(), configs)
    tiny = yaml.safe_load((configs / "tiny.yaml").read_text())
    tiny["paths"].update(outputs=str(tmp_path / "outputs" / "{profile}"), figures=str(tmp_path / "figures" / "{profile}"))
    (configs / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    monkeypatch.setenv("DEFFILLER_CONFIGS", str(configs))
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    cells = [nbformat.v4.new_code_cell('PROFILE: str = "tiny"  # profile\nOVERRIDES: dict = {}  # settings'),
             nbformat.v4.new_code_cell("import pandas as pd\nfrom deffiller.config import load_profile\n"
                                       "from deffiller.pipelines.deffiller import SampleConfig\n"
                                       "from deffiller.reporting.outputs import Outputs\n"
                                       "profile = load_profile(PROFILE, OVERRIDES)\n"
                                       "outputs = Outputs(profile, '01')\n"
                                       "from deffiller.utils.processes import requested_processes\n"
                                       "from deffiller.utils.threads import set_torch_threads\n"
                                       "outputs.table('t', pd.DataFrame({'guidance': "
                                       "[profile.section(SampleConfig).guidance], 'processes': [requested_processes()], "
                                       "'threads': [set_torch_threads()]}))\n"
                                       "outputs.finish()\n")]
    cells[0].metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), notebooks / "01_a.ipynb")

    for name in ("DEFFILLER_PROCESSES", "DEFFILLER_THREADS"):  # set here so that the runner's values are undone after
        monkeypatch.setenv(name, "1")
    assert runner.main(["--profile", "tiny", "--notebooks", str(notebooks), "--set", "sample.guidance=5",
                        "--processes", "2", "--threads", "3"]) == 0
    changed = [p for p in (tmp_path / "figures").iterdir() if p.name.startswith("tiny-set-")]
    assert len(changed) == 1 and not (tmp_path / "figures" / "tiny").exists()
    assert (changed[0] / "t.csv").read_text().splitlines()[1].split(",") == ["5", "2", "3"]  # --processes, --threads reach it
    provenance = json.loads((changed[0] / "provenance_01.json").read_text())
    assert provenance["overrides"] == {"sample.guidance": 5} and provenance["torch_threads"] == 3
