"""The validators `make deploy-check` relies on do reject broken input: a check that passes
everything would prove nothing."""

from __future__ import annotations

from pathlib import Path

import yaml

from .conftest import ROOT, Render, of_kind, run, tool, versions

SCHEMAS = (
    ".tools/kubernetes-json-schema/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
)


def kubeconform(path: Path) -> tuple[int, str]:
    result = run(
        [
            tool("kubeconform"),
            "-strict",
            "-summary",
            "-kubernetes-version",
            versions()["KUBERNETES_SCHEMA_VERSION"],
            "-schema-location",
            SCHEMAS,
            "-skip",
            "Kafka,KafkaNodePool,KafkaTopic,ServiceMonitor",
            str(path),
        ]
    )
    return result.returncode, result.stdout + result.stderr


def test_kubeconform_accepts_the_rendered_deployment_and_rejects_a_misspelled_field(
    render: Render, tmp_path: Path
) -> None:
    deployment = of_kind(render(), "Deployment")["shop-orders"]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(deployment))
    assert kubeconform(good) == (
        0,
        "Summary: 1 resource found in 1 file - Valid: 1, Invalid: 0, Errors: 0, Skipped: 0\n",
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    code, output = kubeconform(bad)
    assert code == 1
    assert "additional properties 'readinesProbe' not allowed" in output


def test_kubeconform_rejects_a_wrong_type_and_a_kind_it_has_no_schema_for(
    render: Render, tmp_path: Path
) -> None:
    budget = of_kind(render(), "PodDisruptionBudget")["shop-orders"]
    budget["spec"]["maxUnavailable"] = ["1"]
    unknown = {"apiVersion": "v1", "kind": "Sevrice", "metadata": {"name": "x"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([budget, unknown]))
    code, output = kubeconform(path)
    assert code == 1
    assert "/spec/maxUnavailable" in output
    assert "could not find schema for Sevrice" in output


def compose_config(text: str, folder: Path) -> tuple[int, str]:
    (folder / "compose.yaml").write_text(text)
    result = run([tool("compose-config"), str(folder / "compose.yaml")])
    return result.returncode, result.stderr


def test_the_compose_loader_rejects_a_dependency_on_an_undefined_service(tmp_path: Path) -> None:
    code, error = compose_config(
        "services:\n  a:\n    image: x:1\n    depends_on:\n      b:\n"
        "        condition: service_healthy\n",
        tmp_path,
    )
    assert code == 1
    assert "depends on undefined service" in error


def test_the_compose_loader_rejects_a_key_the_specification_does_not_have(tmp_path: Path) -> None:
    ours = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    code, error = compose_config(ours.replace("    healthcheck:", "    healthchek:", 1), tmp_path)
    assert code == 1
    assert "healthchek" in error
