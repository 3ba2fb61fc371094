"""The CI recipes in docs/ci are valid YAML workflows whose dbops lines parse."""

from pathlib import Path

import pytest
import yaml

CI = Path(__file__).parents[1] / "docs" / "ci"


@pytest.mark.parametrize("path", sorted(CI.glob("*.yml")), ids=lambda p: p.name)
def test_workflow_is_valid_and_keeps_secrets_out_of_flags(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"]
    assert True in workflow or "on" in workflow  # YAML 1.1 reads `on:` as True
    text = path.read_text()
    for line in text.splitlines():
        if "dbops " in line and "secrets." in line:
            raise AssertionError(f"{path.name}: secret passed on a dbops command line: {line}")
    assert "${{ secrets." in text  # credentials come from the secret store
