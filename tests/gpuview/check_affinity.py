"""Checks a PipelineRun that carries gpuview's placement affinity.

Usage: check_affinity.py SOURCE_DIR RUN.json

The run must pass the Tekton v1 PipelineRun schema (tests/fixtures/tekton/).
That schema leaves podTemplate.affinity open (x-kubernetes-preserve-unknown-
fields), so the affinity is also read with the official Kubernetes Python
client's V1Affinity model, which refuses a missing required field, and it must
come back unchanged, which catches a misspelled or unknown field. Exits 0 when
both pass, 1 with the reason otherwise.
"""
import json
import sys

import jsonschema
from kubernetes.client import ApiClient


class _Resp:
    def __init__(self, data):
        self.data = data


def main():
    src, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        run = json.load(f)
    with open(f"{src}/tests/fixtures/tekton/tekton-v1-pipelinerun.schema.json") as f:
        schema = json.load(f)
    jsonschema.validate(run, schema)
    affinity = run["spec"]["taskRunTemplate"]["podTemplate"]["affinity"]
    api = ApiClient()
    model = api.deserialize(_Resp(json.dumps(affinity)), "V1Affinity")
    back = api.sanitize_for_serialization(model)
    if back != affinity:
        print(f"affinity changed through V1Affinity:\n{json.dumps(affinity)}\n{json.dumps(back)}")
        return 1
    terms = affinity["nodeAffinity"].get("requiredDuringSchedulingIgnoredDuringExecution")
    if terms is not None:
        # The API server refuses Gt/Lt with anything but one integer value.
        for term in terms["nodeSelectorTerms"]:
            for e in term["matchExpressions"]:
                if e["operator"] in ("Gt", "Lt"):
                    assert len(e["values"]) == 1 and int(e["values"][0]) >= 0, e
    return 0


if __name__ == "__main__":
    sys.exit(main())
