"""``aftersale validate`` on journeys that declare experiments: a real subprocess on copies of
the shipped definitions."""

from __future__ import annotations

from pathlib import Path

from tests.integration.helpers import aftersale

EXPERIMENT = """\
journey: timing
trigger: order.delivered
steps:
  - split:
      - name: day7
        weight: 50%
        steps:
          - wait: 7d
          - send: nps_survey
      - name: day21
        weight: 50%
        steps:
          - wait: 21d
          - send: nps_survey
            channels: [whatsapp]
    experiment:
      name: nps_timing
      goal: response_rate within 30d
      min_per_variant: 200
      max_days: 90
      winner: manual
"""


def test_validate_accepts_an_experiment_and_names_each_bad_input_by_line(
        cli_env: dict[str, str], definitions_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    journeys, _ = definitions_dirs
    path = journeys / "timing.yaml"
    path.write_text(EXPERIMENT, encoding="utf-8")
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 7 journeys" in result.stdout

    broken = (EXPERIMENT.replace("weight: 50%\n        steps:\n          - wait: 21d",
                                 "weight: 40%\n        steps:\n          - wait: 21d")
              .replace("winner: manual", "winner: day14")
              .replace("- send: nps_survey\n            channels", "- send: no_such\n"
                       "            channels"))
    path.write_text(broken, encoding="utf-8")
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"{path}:")]
    assert any(line.startswith(f"{path}:4: the variants' weights add up to 90%, not 100%")
               for line in lines), result.stdout
    assert any(line.startswith(f"{path}:21: winner 'day14' is not auto, manual or a variant")
               and "day7, day21" in line for line in lines), result.stdout

    # once the file is well-formed, its templates are checked against the content
    path.write_text(EXPERIMENT.replace("- send: nps_survey\n            channels",
                                       "- send: no_such\n            channels"), encoding="utf-8")
    result = aftersale("validate", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{path}:14: unknown template 'no_such'" in result.stdout, result.stdout
